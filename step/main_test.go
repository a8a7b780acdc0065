package step_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

func TestMain(m *testing.M) {
	testenv.Main(m)
}

// result of one deliver run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// runTimeout bounds one run of deliver in the tests.
const runTimeout = 3 * time.Minute

// run runs deliver in-process, as main does: step.Main with args, buffers for stdout and
// stderr, and an environment of its own, never the test process's: PATH, HOME (a fresh
// directory, also the working directory), DOCKER_CONFIG (HOME) and TMPDIR (a fresh directory),
// then env (KEY=VALUE; a later value wins). Runs with different environments may run at once.
func run(t testing.TB, env []string, args ...string) result {
	t.Helper()
	return runIn(t, t.TempDir(), env, args...)
}

// runIn is run with dir as HOME and working directory.
func runIn(t testing.TB, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	vars := map[string]string{}
	for _, kv := range append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "DOCKER_CONFIG=" + dir, "TMPDIR=" + t.TempDir()}, env...) {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	var stdout, stderr bytes.Buffer
	code := func() (code int) {
		defer func() {
			// A panic is what the process would have printed and exited 2 with, not the end
			// of every test of the package.
			if p := recover(); p != nil {
				fmt.Fprintf(&stderr, "panic: %v\n\n%s", p, debug.Stack())
				code = 2
			}
		}()
		return step.Main(ctx, append([]string{"deliver"}, args...), step.IO{
			Stdout: &stdout, Stderr: &stderr, Dir: dir,
			Getenv: func(k string) string { return vars[k] },
		})
	}()
	if ctx.Err() != nil {
		t.Errorf("deliver %s ran longer than %s", strings.Join(args, " "), runTimeout)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// buildDeliver builds the deliver binary, for runProcess.
func buildDeliver(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "deliver")
	build := exec.Command("go", "build", "-o", bin, "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building deliver: %v\n%s", err, out)
	}
	return bin
}

// runProcess runs the deliver binary bin (buildDeliver) with args as a separate process, for
// the tests where the process boundary is the point, such as pipelines running at once, with
// the environment run gives.
func runProcess(t testing.TB, bin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	home := t.TempDir()
	cmd.Dir = home
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + home, "TMPDIR=" + t.TempDir()}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running deliver: %v", err)
		}
		code = ee.ExitCode()
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// newServers starts a git server (with gitOpts) with the app's config repo and a registry.
func newServers(t *testing.T, a fixture.App, gitOpts ...testenv.GitOption) *fixture.Servers {
	t.Helper()
	return fixture.NewServers(t, a, fixture.Options{GitOpts: gitOpts})
}

func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

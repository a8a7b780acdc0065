package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.yaml.in/yaml/v3"

	"github.com/deliverhq/deliver/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestReleaseTags checks which tags a release sets: the floating vX.Y and vX only for the
// newest release of that line, none for a pre-release, and that anything but vX.Y.Z[-pre] is
// refused.
func TestReleaseTags(t *testing.T) {
	for _, tc := range []struct {
		version  string
		existing []string
		want     string
	}{
		{"v1.2.3", nil, "v1.2.3 v1.2 v1"},
		{"v1.2.3", []string{"v1.2.2", "v1.1.9", "v0.9.0", "v2.0.0", "latest", "v1.3.0-rc.1"}, "v1.2.3 v1.2 v1"},
		// A patch of an older minor moves v1.1 but never v1 back.
		{"v1.1.5", []string{"v1.1.4", "v1.2.0"}, "v1.1.5 v1.1"},
		// A patch of an older patch line moves nothing.
		{"v1.2.3", []string{"v1.2.4"}, "v1.2.3"},
		// Re-releasing the same version (a re-run) sets the same tags.
		{"v1.2.3", []string{"v1.2.3", "v1.2", "v1"}, "v1.2.3 v1.2 v1"},
		{"v2.0.0-rc.1", []string{"v1.9.0"}, "v2.0.0-rc.1"},
		{"v0.1.0", nil, "v0.1.0 v0.1 v0"},
	} {
		got, err := releaseTags(tc.version, tc.existing)
		if err != nil {
			t.Errorf("releaseTags(%s, %v): %v", tc.version, tc.existing, err)
			continue
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("releaseTags(%s, %v) = %v, want %s", tc.version, tc.existing, got, tc.want)
		}
	}
	for _, bad := range []string{"1.2.3", "v1.2", "v1", "v01.2.3", "v1.2.3+build.5", "v1.2.3-", "release-1.2.3", ""} {
		if _, err := releaseTags(bad, nil); !errors.Is(err, errUsage) {
			t.Errorf("releaseTags(%q): %v, want a usage error", bad, err)
		}
	}
}

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// pinnedFiles are the files pin rewrites.
var pinnedFiles = []string{"action.yml", ".gitlab-ci-template.yml", "templates/deliver.yml"}

// copyPinned copies the repository's pinned files to a temporary root.
func copyPinned(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range pinnedFiles {
		data, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// changedLines returns the lines of after that differ from before (same line count expected).
func changedLines(t *testing.T, file string, before, after []byte) []string {
	t.Helper()
	b, a := strings.Split(string(before), "\n"), strings.Split(string(after), "\n")
	if len(a) != len(b) {
		t.Fatalf("%s: %d lines after pinning, %d before", file, len(a), len(b))
	}
	var changed []string
	for i := range a {
		if a[i] != b[i] {
			changed = append(changed, a[i])
		}
	}
	return changed
}

// TestPin pins copies of the repository's action.yml, GitLab template and component and checks
// that exactly one line of each changed, to the image by digest, and that the files still
// parse to the same structure otherwise; and that a bad version, digest or image is refused
// with nothing written.
func TestPin(t *testing.T) {
	root := copyPinned(t)
	before := map[string][]byte{}
	for _, f := range pinnedFiles {
		before[f], _ = os.ReadFile(filepath.Join(root, f))
	}
	var stderr bytes.Buffer
	if err := run([]string{"pin", "--root", root, "--version", "v1.2.3", "--image", "ghcr.io/deliverhq/deliver", "--digest", testDigest}, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatalf("pin: %v\n%s", err, stderr.String())
	}
	want := map[string]string{
		"action.yml":              "  image: docker://ghcr.io/deliverhq/deliver@" + testDigest + " # v1.2.3, " + pinMarker,
		".gitlab-ci-template.yml": `    DELIVER_VERSION: "v1.2.3@` + testDigest + `" # v1.2.3, ` + pinMarker,
		"templates/deliver.yml":   "      default: ghcr.io/deliverhq/deliver:v1.2.3@" + testDigest + " # v1.2.3, " + pinMarker,
	}
	for _, f := range pinnedFiles {
		after, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		changed := changedLines(t, f, before[f], after)
		if len(changed) != 1 || changed[0] != want[f] {
			t.Errorf("%s: changed lines %q, want only %q", f, changed, want[f])
		}
	}
	// The pinned values as GitHub's runner and GitLab read them.
	var action struct {
		Runs struct{ Using, Image string }
	}
	data, _ := os.ReadFile(filepath.Join(root, "action.yml"))
	if err := yaml.Unmarshal(data, &action); err != nil {
		t.Fatal(err)
	}
	if action.Runs.Using != "docker" || action.Runs.Image != "docker://ghcr.io/deliverhq/deliver@"+testDigest {
		t.Errorf("action.yml runs %+v", action.Runs)
	}
	// Pinning again (a re-run) gives the same files.
	again := copyPinned(t)
	for _, f := range pinnedFiles {
		data, _ := os.ReadFile(filepath.Join(root, f))
		if err := os.WriteFile(filepath.Join(again, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := run([]string{"pin", "--root", again, "--version", "v1.2.3", "--digest", testDigest}, &bytes.Buffer{}, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, f := range pinnedFiles {
		a, _ := os.ReadFile(filepath.Join(root, f))
		b, _ := os.ReadFile(filepath.Join(again, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: pinning a pinned file changed it", f)
		}
	}

	for _, tc := range []struct {
		name  string
		args  []string
		usage bool
	}{
		{"no version", []string{"--digest", testDigest}, true},
		{"version without v", []string{"--version", "1.2.3", "--digest", testDigest}, true},
		{"short digest", []string{"--version", "v1.2.3", "--digest", "sha256:0123"}, true},
		{"tag as digest", []string{"--version", "v1.2.3", "--digest", "v1.2.3"}, true},
		{"bad image", []string{"--version", "v1.2.3", "--digest", testDigest, "--image", "GHCR.io/Deliver!"}, true},
		// The template names ghcr.io/deliverhq/deliver:${DELIVER_VERSION}: pinning another
		// repository's digest there would run the wrong image.
		{"other repository", []string{"--version", "v1.2.3", "--digest", testDigest, "--image", "registry.example.com/deliver"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := copyPinned(t)
			err := run(append([]string{"pin", "--root", root}, tc.args...), &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || errors.Is(err, errUsage) != tc.usage {
				t.Fatalf("pin %v: %v (usage error: %v, want %v)", tc.args, err, errors.Is(err, errUsage), tc.usage)
			}
			for _, f := range pinnedFiles {
				after, _ := os.ReadFile(filepath.Join(root, f))
				orig, _ := os.ReadFile(filepath.Join("..", "..", f))
				if !bytes.Equal(after, orig) {
					t.Errorf("a refused pin changed %s", f)
				}
			}
		})
	}
}

// TestReleaseScript runs `make release` (hack/release.sh) as the release workflow does, in a
// copy of this tree committed and tagged v1.2.3, with a bare repository as origin and the test
// registry as the image's home: it builds the two-platform image and pushes it under v1.2.3,
// v1.2 and v1, makes the release commit on top of the tag with action.yml and the GitLab files
// pinned to the pushed index's digest, and force-pushes the moved tags. A re-run from the same
// commit (a re-run of the workflow, the tags already moved) makes the same release commit.
func TestReleaseScript(t *testing.T) {
	for _, tool := range []string{"git", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required: %v", tool, err)
		}
	}
	src, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	home := t.TempDir()
	env := append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.test", "GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.test",
		"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z")
	// Keep the caches of the real HOME (Go's, the busybox cache) when HOME moves.
	for k, v := range map[string]string{"GOCACHE": "env GOCACHE", "GOMODCACHE": "env GOMODCACHE", "GOPATH": "env GOPATH"} {
		if os.Getenv(k) == "" {
			out, err := exec.Command("go", strings.Fields(v)...).Output()
			if err != nil {
				t.Fatal(err)
			}
			env = append(env, k+"="+strings.TrimSpace(string(out)))
		}
	}
	if os.Getenv("DELIVER_CACHE") == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, "DELIVER_CACHE="+filepath.Join(cache, "deliver"))
	}
	git := func(dir string, args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}

	// The app repository: this tree's files (tracked and new, not ignored), one commit, tagged.
	work := filepath.Join(t.TempDir(), "deliver")
	files := git(src, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for _, f := range strings.Split(strings.TrimRight(files, "\x00"), "\x00") {
		data, err := os.ReadFile(filepath.Join(src, f))
		if errors.Is(err, os.ErrNotExist) {
			continue // deleted in the work tree
		}
		if err != nil {
			t.Fatal(err)
		}
		info, err := os.Stat(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(work, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, f), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	reg := testenv.NewRegistry(t)
	image := reg.Host + "/deliverhq/deliver"
	// The images live in the test registry: the template names it, as a fork publishing
	// elsewhere would (pin refuses a template that names another repository).
	tmpl := filepath.Join(work, ".gitlab-ci-template.yml")
	data, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte("name: ghcr.io/deliverhq/deliver:${DELIVER_VERSION}"), []byte("name: "+image+":${DELIVER_VERSION}"), 1)
	if err := os.WriteFile(tmpl, data, 0o644); err != nil {
		t.Fatal(err)
	}
	origin := filepath.Join(t.TempDir(), "origin.git")
	git(t.TempDir(), "init", "-q", "--bare", origin)
	git(work, "init", "-q", "-b", "main")
	git(work, "add", "-A")
	git(work, "commit", "-q", "-m", "deliver")
	git(work, "tag", "-a", "v1.2.3", "-m", "v1.2.3")
	git(work, "remote", "add", "origin", origin)
	git(work, "push", "-q", "origin", "main", "v1.2.3")
	tagged := git(work, "rev-parse", "HEAD")

	release := func() string {
		t.Helper()
		cmd := exec.CommandContext(ctx, "make", "release", "VERSION=v1.2.3", "RELEASE_IMAGE="+image, "RELEASE_REMOTE=origin")
		output := filepath.Join(t.TempDir(), "github_output")
		cmd.Dir, cmd.Env = work, append(env, "GITHUB_OUTPUT="+output)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make release: %v\n%s", err, out)
		}
		t.Logf("make release in %s:\n%s", time.Since(start).Round(time.Second), lastLines(string(out), 12))
		data, err := os.ReadFile(output)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	outputs := release()

	// The image: one index under the three tags, with both platforms.
	var digest string
	for _, l := range strings.Split(outputs, "\n") {
		if v, ok := strings.CutPrefix(l, "digest="); ok {
			digest = v
		}
	}
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("GITHUB_OUTPUT has no digest:\n%s", outputs)
	}
	for _, tag := range []string{"v1.2.3", "v1.2", "v1"} {
		ref, err := name.ParseReference(image + ":" + tag)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref, reg.RemoteOptions()...)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if desc.Digest.String() != digest || desc.MediaType != types.OCIImageIndex {
			t.Errorf("%s is %s %s, want the index %s", ref, desc.MediaType, desc.Digest, digest)
		}
		idx, err := desc.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		man, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var platforms []string
		for _, m := range man.Manifests {
			platforms = append(platforms, m.Platform.String())
		}
		if strings.Join(platforms, " ") != "linux/amd64 linux/arm64/v8" {
			t.Errorf("%s: platforms %v", ref, platforms)
		}
	}

	// The release commit: on top of the tagged one, changing the three pinned lines only, and
	// every tag of the release on it, in origin.
	commit := git(work, "rev-parse", "HEAD")
	if parent := git(work, "rev-parse", commit+"^"); parent != tagged {
		t.Errorf("the release commit's parent is %s, want the tagged commit %s", parent, tagged)
	}
	if changed := git(work, "diff", "--name-only", tagged, commit); changed != strings.Join([]string{".gitlab-ci-template.yml", "action.yml", "templates/deliver.yml"}, "\n") {
		t.Errorf("the release commit changes %q", changed)
	}
	if diff := git(work, "diff", "--numstat", tagged, commit); strings.Count(diff, "1\t1\t") != 3 {
		t.Errorf("the release commit changes more than one line per file:\n%s", diff)
	}
	action := git(work, "show", commit+":action.yml")
	if !strings.Contains(action, "\n  image: docker://"+image+"@"+digest+" # v1.2.3") {
		t.Errorf("the released action.yml does not run %s@%s", image, digest)
	}
	for _, tag := range []string{"v1.2.3", "v1.2", "v1", "1.2.3"} {
		if got := git(origin, "rev-parse", tag+"^{commit}"); got != commit {
			t.Errorf("origin's %s is %s, want the release commit %s", tag, got, commit)
		}
	}
	if typ := git(origin, "cat-file", "-t", "v1.2.3"); typ != "tag" {
		t.Errorf("v1.2.3 is a %s, want an annotated tag", typ)
	}

	// A re-run of the workflow: the same commit checked out, the tags already moved.
	git(work, "checkout", "-q", "--detach", tagged)
	git(work, "fetch", "-q", "--force", "origin", "+refs/tags/*:refs/tags/*")
	outputs = release()
	if !strings.Contains(outputs, "digest="+digest) || !strings.Contains(outputs, "commit="+commit) {
		t.Errorf("the re-run gave %q, want the same digest %s and release commit %s", outputs, digest, commit)
	}
	if got := git(origin, "rev-parse", "v1^{commit}"); got != commit {
		t.Errorf("after the re-run origin's v1 is %s, want %s", got, commit)
	}

	// Releasing from a release commit, or from another commit than the tag's, is refused.
	git(work, "checkout", "-q", "--detach", commit)
	cmd := exec.CommandContext(ctx, "make", "release", "VERSION=v1.2.3", "RELEASE_IMAGE="+image)
	cmd.Dir, cmd.Env = work, env
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "already pins an image") {
		t.Errorf("make release from the release commit: %v, want a refusal\n%s", err, out)
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

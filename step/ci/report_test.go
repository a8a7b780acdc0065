package ci

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fileErr struct{}

func (fileErr) Error() string {
	return "overlays/staging/kustomization.yaml:7: images[0]: duplicate image name"
}
func (fileErr) FileLine() (string, int) { return "overlays/staging/kustomization.yaml", 7 }
func fixedClock(times ...time.Time) func() time.Time {
	i := 0
	return func() time.Time { t := times[i%len(times)]; i++; return t }
}

func outcome() Outcome {
	return Outcome{
		Command: "deploy", Environment: "staging", Changed: true,
		CommitSHA: "0123456789abcdef0123456789abcdef01234567", CommitURL: "https://gitlab.example.com/team/config/-/commit/0123456789abcdef0123456789abcdef01234567",
		Images: []string{"web=registry.example.com/team/web:1.4.3@sha256:" + strings.Repeat("a", 64)}, ImageDigest: "sha256:" + strings.Repeat("a", 64),
		URL: "https://staging.example.com", Applied: 4, Rollout: "ready",
		Phases: []PhaseTiming{{Name: "verify", Duration: 12 * time.Millisecond}, {Name: "push", Duration: 80 * time.Millisecond}},
	}
}

func TestGitHubReporter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"GITHUB_OUTPUT": filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY": filepath.Join(dir, "summary")}
	var log, raw bytes.Buffer
	g := NewGitHub(&log, &raw, func(k string) string { return env[k] }, []string{"s3cret-token"})
	g.now = fixedClock(time.Unix(0, 0), time.Unix(2, 0))
	end := g.Phase("clone", "http://git.example/config.git")
	end(nil)
	o := outcome()
	o.Err = fileErr{}
	if err := g.Finish(o); err != nil {
		t.Fatal(err)
	}
	if raw.String() != "::add-mask::s3cret-token\n" {
		t.Errorf("masks = %q", raw.String())
	}
	for _, want := range []string{"::group::clone: http://git.example/config.git\n", "clone done in 2s\n", "::endgroup::\n",
		"::error file=overlays/staging/kustomization.yaml,line=7,title=deliver deploy failed::overlays/staging/kustomization.yaml:7"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	out, _ := os.ReadFile(env["GITHUB_OUTPUT"])
	for _, want := range []string{"changed<<", "\ntrue\n", "commit-sha<<", "0123456789abcdef0123456789abcdef01234567", "image-digest<<", "rollout<<"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("outputs lack %q:\n%s", want, out)
		}
	}
	summary, _ := os.ReadFile(env["GITHUB_STEP_SUMMARY"])
	for _, want := range []string{"### deliver deploy failed", "| Environment | staging |", "[0123456789ab](https://gitlab.example.com/team/config/-/commit/", "| Objects applied / pruned | 4 / 0 |", "| Phases | verify 12ms, push 80ms |"} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
}

func TestGitHubReporterWithoutFiles(t *testing.T) {
	t.Parallel()
	// Outside a runner's file commands (GITHUB_OUTPUT unset) nothing may panic or be written.
	var log bytes.Buffer
	g := NewGitHub(&log, &log, func(string) string { return "" }, nil)
	if err := g.Finish(outcome()); err != nil {
		t.Fatal(err)
	}
}

func TestGitLabReporter(t *testing.T) {
	t.Parallel()
	dotenv := filepath.Join(t.TempDir(), "deliver.env")
	var log bytes.Buffer
	g := NewGitLab(&log, dotenv, func(s string) string { return strings.ReplaceAll(s, "s3cret", "***") })
	g.now = fixedClock(time.Unix(100, 0), time.Unix(103, 0))
	g.Phase("apply", "server-side apply")(errors.New("boom"))
	o := outcome()
	o.URL = "https://user:s3cret@staging.example.com"
	if err := g.Finish(o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\x1b[0Ksection_start:100:deliver_apply_1\r\x1b[0K", "apply failed in 3s\n", "\x1b[0Ksection_end:103:deliver_apply_1\r\x1b[0K"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%q", want, log.String())
		}
	}
	got, err := os.ReadFile(dotenv)
	if err != nil {
		t.Fatal(err)
	}
	want := "DELIVER_CHANGED=true\nDELIVER_COMMIT_SHA=0123456789abcdef0123456789abcdef01234567\n" +
		"DELIVER_COMMIT_URL=https://gitlab.example.com/team/config/-/commit/0123456789abcdef0123456789abcdef01234567\n" +
		"DELIVER_IMAGE_REF=registry.example.com/team/web:1.4.3@sha256:" + strings.Repeat("a", 64) + "\n" +
		"DELIVER_IMAGE_DIGEST=sha256:" + strings.Repeat("a", 64) + "\nDELIVER_URL=https://user:***@staging.example.com\nDELIVER_ROLLOUT=ready\n"
	if string(got) != want {
		t.Errorf("dotenv:\n%s\nwant:\n%s", got, want)
	}
}

// TestGitHubReporterUnwritableFiles: output and summary files that cannot be written make
// Finish return an error naming each (both are tried), never a panic.
func TestGitHubReporterUnwritableFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GITHUB_OUTPUT": dir, "GITHUB_STEP_SUMMARY": filepath.Join(notDir, "summary")}
	var log bytes.Buffer
	g := NewGitHub(&log, &log, func(k string) string { return env[k] }, nil)
	err := g.Finish(outcome())
	if err == nil {
		t.Fatal("Finish wrote to a directory and under a regular file without an error")
	}
	for _, want := range []string{"GITHUB_OUTPUT: open " + dir + ": is a directory", "GITHUB_STEP_SUMMARY: open " + env["GITHUB_STEP_SUMMARY"] + ": not a directory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q: %v", want, err)
		}
	}
}

// TestGitHubOutputsDelimiter: each output is written name<<DELIMITER with a random delimiter,
// so a value cannot end it early and set another output.
func TestGitHubOutputsDelimiter(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "output")
	g := NewGitHub(io.Discard, io.Discard, func(k string) string { return map[string]string{"GITHUB_OUTPUT": path}[k] }, nil)
	o := outcome()
	o.URL = "https://x.example\n_GitHubActionsFileCommandDelimeter_\nchanged<<EOF\nfalse\nEOF"
	if err := g.Finish(o); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(string(b), "\n")
	outputs := map[string]string{}
	for i := 0; i < len(lines); i++ {
		name, delim, ok := strings.Cut(lines[i], "<<")
		if !ok {
			continue
		}
		var v []string
		for i++; i < len(lines) && lines[i] != delim; i++ {
			v = append(v, lines[i])
		}
		if !strings.HasPrefix(delim, "ghadelimiter_") {
			t.Errorf("output %s: delimiter %q is not random", name, delim)
		}
		outputs[name] = strings.Join(v, "\n")
	}
	if outputs["changed"] != "true" || outputs["url"] != o.URL {
		t.Errorf("outputs as the runner reads them: %q", outputs)
	}
}

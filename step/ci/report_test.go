package ci

import (
	"bytes"
	"encoding/json"
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
	// The config repo is the workflow's repository: the annotation points at the file.
	o.ErrAt = FileRef{Path: "overlays/staging/kustomization.yaml", Line: 7, URL: "https://github.com/acme/web/blob/abc/overlays/staging/kustomization.yaml#L7", InSourceRepo: true}
	if err := g.Finish(o); err != nil {
		t.Fatal(err)
	}
	if raw.String() != "::add-mask::s3cret-token\n" {
		t.Errorf("masks = %q", raw.String())
	}
	for _, want := range []string{"::group::clone: http://git.example/config.git\n", "clone done in 2s\n", "::endgroup::\n",
		"::error file=overlays/staging/kustomization.yaml,line=7,title=deliver deploy failed::overlays/staging/kustomization.yaml:7: images[0]: duplicate image name%0Ain the config repo: https://github.com/acme/web/blob/abc/overlays/staging/kustomization.yaml#L7\n"} {
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
	for _, want := range []string{"### deliver deploy failed", "| Environment | staging |", "[0123456789ab](https://gitlab.example.com/team/config/-/commit/", "| Objects applied / pruned | 4 / 0 |", "| Phases | verify 12ms, push 80ms |",
		"| Error in | [overlays/staging/kustomization.yaml:7](https://github.com/acme/web/blob/abc/overlays/staging/kustomization.yaml#L7) |"} {
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
	g := NewGitLab(&log, Dotenv{Path: dotenv}, func(s string) string { return strings.ReplaceAll(s, "s3cret", "***") })
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
	// The unprefixed keys, then the job's own copy under DELIVER_STAGING_.
	keys := "CHANGED=true\nCOMMIT_SHA=0123456789abcdef0123456789abcdef01234567\n" +
		"COMMIT_URL=https://gitlab.example.com/team/config/-/commit/0123456789abcdef0123456789abcdef01234567\n" +
		"IMAGE_REF=registry.example.com/team/web:1.4.3@sha256:" + strings.Repeat("a", 64) + "\n" +
		"IMAGE_DIGEST=sha256:" + strings.Repeat("a", 64) + "\nURL=https://user:***@staging.example.com\nROLLOUT=ready\nPULL_REQUEST_URL=\nPULL_REQUEST_NUMBER=\n"
	prefixed := func(p string) string {
		return p + strings.ReplaceAll(strings.TrimSuffix(keys, "\n"), "\n", "\n"+p) + "\n"
	}
	want := prefixed("DELIVER_") + prefixed("DELIVER_STAGING_")
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
	outputs := parseOutputs(t, string(b))
	if outputs["changed"] != "true" || outputs["url"] != o.URL {
		t.Errorf("outputs as the runner reads them: %q", outputs)
	}
}

// TestGitHubAnnotationConfigRepoElsewhere: an error about a file of a config repo that is not
// the workflow's repository gets no file= (GitHub would show it as a file of the workflow's
// repo); the link to the file at the commit deliver read follows the message, and the
// summary links it.
func TestGitHubAnnotationConfigRepoElsewhere(t *testing.T) {
	t.Parallel()
	summary := filepath.Join(t.TempDir(), "summary")
	var log bytes.Buffer
	g := NewGitHub(&log, io.Discard, func(k string) string { return map[string]string{"GITHUB_STEP_SUMMARY": summary}[k] }, nil)
	o := outcome()
	o.Err = fileErr{}
	link := "https://github.com/acme/config/blob/0123456789abcdef0123456789abcdef01234567/overlays/staging/kustomization.yaml#L7"
	o.ErrAt = FileRef{Path: "overlays/staging/kustomization.yaml", Line: 7, URL: link}
	if err := g.Finish(o); err != nil {
		t.Fatal(err)
	}
	want := "::error title=deliver deploy failed::overlays/staging/kustomization.yaml:7: images[0]: duplicate image name%0Ain the config repo: " + link + "\n"
	if !strings.Contains(log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, log.String())
	}
	b, _ := os.ReadFile(summary)
	if want := "| Error in | [overlays/staging/kustomization.yaml:7](" + link + ") |"; !strings.Contains(string(b), want) {
		t.Errorf("summary lacks %q:\n%s", want, b)
	}
}

// TestSummaryDryRun: a dry run's summary says so, never "succeeded" or "Changed", and shows
// the overlay diff; the diff and the images are step outputs too.
func TestSummaryDryRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"GITHUB_OUTPUT": filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY": filepath.Join(dir, "summary")}
	g := NewGitHub(io.Discard, io.Discard, func(k string) string { return env[k] }, nil)
	o := outcome()
	o.DryRun, o.CommitSHA, o.CommitURL, o.Rollout, o.Applied = true, "", "", "dry-run", 3
	o.Previous = map[string]string{"web": "registry.example.com/team/web:1.4.2"}
	// A diff holding a code fence must not end the summary's block early.
	o.Diff = "--- a/overlays/staging/kustomization.yaml\n+++ b/overlays/staging/kustomization.yaml\n@@ -1,3 +1,3 @@\n # ```\n-    newTag: 1.4.2\n+    newTag: 1.4.3\n"
	o.Objects = []ObjectStatus{{Object: "Deployment/stg/web", Action: "configured"}}
	if err := g.Finish(o); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(env["GITHUB_STEP_SUMMARY"])
	summary := string(b)
	for _, want := range []string{"### deliver deploy dry run: nothing was pushed or applied\n", "| Would change | true |",
		"| Objects the server would apply / prune | 3 / 0 |", "| Image | Before | After (dry run) |", "| web | `registry.example.com/team/web:1.4.2` | `registry.example.com/team/web:1.4.3@sha256:",
		"<summary>Server-side dry run: 1 object(s)</summary>", "| Deployment/stg/web | configured |  |",
		"\n````diff\n--- a/overlays/staging/kustomization.yaml\n", "+    newTag: 1.4.3\n````\n"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
	for _, bad := range []string{"succeeded", "| Changed |", "| Rollout |", "Config commit"} {
		if strings.Contains(summary, bad) {
			t.Errorf("the dry run's summary says %q:\n%s", bad, summary)
		}
	}
	out, _ := os.ReadFile(env["GITHUB_OUTPUT"])
	outputs := parseOutputs(t, string(out))
	if outputs["diff"] != o.Diff {
		t.Errorf("output diff = %q, want the overlay diff", outputs["diff"])
	}
	var images []Image
	if err := json.Unmarshal([]byte(outputs["images"]), &images); err != nil {
		t.Fatalf("output images %q: %v", outputs["images"], err)
	}
	want := []Image{{Name: "web", Image: "registry.example.com/team/web:1.4.3@sha256:" + strings.Repeat("a", 64), Digest: "sha256:" + strings.Repeat("a", 64), Previous: "registry.example.com/team/web:1.4.2"}}
	if len(images) != 1 || images[0] != want[0] {
		t.Errorf("output images = %+v, want %+v", images, want)
	}
}

// TestSummaryForReviewers: each image before and after, the source commit and pipeline
// linked, the trigger and who, the config commit, and the rollout per object.
func TestSummaryForReviewers(t *testing.T) {
	t.Parallel()
	o := outcome()
	o.Images = append(o.Images, "api=registry.example.com/team/api:2.0.0@sha256:"+strings.Repeat("b", 64))
	o.Previous = map[string]string{"web": "registry.example.com/team/web:1.4.2@sha256:" + strings.Repeat("c", 64)}
	o.Run = Context{Provider: ProviderGitLab, Commit: "4f2a9c1d7e0b8a6f5c3d2e1f0a9b8c7d6e5f4a3b", CommitURL: "https://gitlab.example.com/team/web/-/commit/4f2a9c1d7e0b8a6f5c3d2e1f0a9b8c7d6e5f4a3b",
		PipelineURL: "https://gitlab.example.com/team/web/-/pipelines/7", Actor: "Ada | Lovelace", Event: "push", Trigger: TriggerAutomated}
	o.Objects = []ObjectStatus{{Object: "Namespace/stg", Action: "unchanged", Status: "Current"}, {Object: "Deployment/stg/web", Action: "configured", Status: "2/2 ready"},
		{Object: "ConfigMap/stg/old", Action: "pruned"}}
	s := Summary(o)
	for _, want := range []string{
		"### deliver deploy succeeded\n",
		"| Image | Before | After |\n|---|---|---|\n",
		"| web | `registry.example.com/team/web:1.4.2@sha256:ccc", "` | `registry.example.com/team/web:1.4.3@sha256:aaa",
		"| api | (none) | `registry.example.com/team/api:2.0.0@sha256:bbb",
		"| Config commit | [0123456789ab](https://gitlab.example.com/team/config/-/commit/0123456789abcdef0123456789abcdef01234567) |",
		"| Source commit | [4f2a9c1d7e0b](https://gitlab.example.com/team/web/-/commit/4f2a9c1d7e0b8a6f5c3d2e1f0a9b8c7d6e5f4a3b) |",
		"| Pipeline | [https://gitlab.example.com/team/web/-/pipelines/7](https://gitlab.example.com/team/web/-/pipelines/7) |",
		"| Trigger | automated (push) by Ada \\| Lovelace |",
		"| Rollout | ready |",
		"<summary>Rollout: 3 object(s)</summary>", "| Deployment/stg/web | configured | 2/2 ready |", "| ConfigMap/stg/old | pruned |  |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
}

// TestGitLabDotenvPrefix: the job's own keys take the configured prefix; a key that would be
// one of deliver's flag variables in a later job (environment "env" gives DELIVER_ENV_URL,
// --env-url) is left out with a warning; a prefix equal to DELIVER_ writes each key once.
func TestGitLabDotenvPrefix(t *testing.T) {
	t.Parallel()
	reserved := func(k string) bool { return k == "DELIVER_ENV_URL" }
	tests := []struct {
		name, env, prefix string
		want              []string // keys, in order
		warn              string
	}{
		{name: "default", env: "eu-west.1", want: keys("DELIVER_", "DELIVER_EU_WEST_1_")},
		{name: "custom", env: "staging", prefix: "STG_", want: keys("DELIVER_", "STG_")},
		{name: "same as unprefixed", env: "staging", prefix: "DELIVER_", want: keys("DELIVER_")},
		{name: "no environment", want: keys("DELIVER_")},
		{name: "flag collision", env: "env", want: without(keys("DELIVER_", "DELIVER_ENV_"), "DELIVER_ENV_URL"),
			warn: "dotenv report: DELIVER_ENV_URL is left out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "deliver.env")
			var log bytes.Buffer
			g := NewGitLab(&log, Dotenv{Path: path, Prefix: tt.prefix, Reserved: reserved}, func(s string) string { return s })
			o := outcome()
			o.Environment = tt.env
			if err := g.Finish(o); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			var got []string
			for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				k, _, _ := strings.Cut(line, "=")
				got = append(got, k)
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("keys:\n%v\nwant\n%v", got, tt.want)
			}
			if tt.warn != "" && !strings.Contains(log.String(), tt.warn) {
				t.Errorf("no warning %q:\n%s", tt.warn, log.String())
			}
		})
	}
}

func keys(prefixes ...string) []string {
	var out []string
	for _, p := range prefixes {
		for _, k := range []string{"CHANGED", "COMMIT_SHA", "COMMIT_URL", "IMAGE_REF", "IMAGE_DIGEST", "URL", "ROLLOUT", "PULL_REQUEST_URL", "PULL_REQUEST_NUMBER"} {
			out = append(out, p+k)
		}
	}
	return out
}

func without(list []string, drop string) []string {
	var out []string
	for _, s := range list {
		if s != drop {
			out = append(out, s)
		}
	}
	return out
}

// TestWriteReport: the JSON report holds what the summary shows, for later jobs.
func TestWriteReport(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "deliver-staging.json")
	o := outcome()
	o.Previous = map[string]string{"web": "registry.example.com/team/web:1.4.2"}
	o.Run = Context{Commit: "4f2a9c1d", PipelineURL: "https://ci.example.com/p/7", Actor: "ada", Trigger: TriggerManual, Event: "web"}
	o.Objects = []ObjectStatus{{Object: "Deployment/stg/web", Action: "configured", Status: "2/2 ready"}}
	o.Err, o.ErrAt = fileErr{}, FileRef{Path: "overlays/staging/kustomization.yaml", Line: 7}
	if err := WriteReport(path, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Command != "deploy" || r.Environment != "staging" || r.Succeeded || !r.Changed || r.ConfigCommit.SHA != o.CommitSHA ||
		len(r.Images) != 1 || r.Images[0].Previous != "registry.example.com/team/web:1.4.2" || r.Images[0].Digest != o.ImageDigest ||
		r.Source.Trigger != "manual" || r.Source.Actor != "ada" || len(r.Objects) != 1 || r.Objects[0].Status != "2/2 ready" ||
		r.ErrorAt == nil || r.ErrorAt.Line != 7 || !strings.Contains(r.Error, "duplicate image name") || len(r.Phases) != 2 {
		t.Errorf("report:\n%s", b)
	}
}

// parseOutputs parses a GITHUB_OUTPUT file of name<<DELIMITER blocks as the runner reads it,
// checking that each delimiter is deliver's random one.
func parseOutputs(t *testing.T, s string) map[string]string {
	t.Helper()
	lines := strings.Split(s, "\n")
	out := map[string]string{}
	for i := 0; i < len(lines); i++ {
		name, delim, ok := strings.Cut(lines[i], "<<")
		if !ok {
			continue
		}
		if !strings.HasPrefix(delim, "ghadelimiter_") {
			t.Errorf("output %s: delimiter %q is not random", name, delim)
		}
		var v []string
		for i++; i < len(lines) && lines[i] != delim; i++ {
			v = append(v, lines[i])
		}
		out[name] = strings.Join(v, "\n")
	}
	return out
}

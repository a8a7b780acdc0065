package step_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// pathStep is one run of a command script: the run, what it must give, and whether it must
// move the config repo's branch.
type pathStep struct {
	name  string
	env   []string
	args  []string
	want  want
	moved bool // the run pushed a commit (else the branch must not move)
}

// runScript runs steps in order against one config repo, each after the one before.
func runScript(t *testing.T, s *fixture.Servers, steps []pathStep) {
	t.Helper()
	for _, st := range steps {
		before := s.Head(t)
		r := run(t, st.env, args(st.args, s.GitArgs())...)
		t.Run(st.name, func(t *testing.T) { st.want.check(t, r) })
		if moved := s.Head(t) != before; moved != st.moved {
			t.Errorf("%s: the config repo's branch moved: %t, want %t\n%s", st.name, moved, st.moved, r)
		}
	}
}

// normalize replaces what changes from run to run (the registry's port, digests, commits,
// times) with fixed words, for golden files. In history's table, every value it replaces has
// the width of its placeholder, so the columns stay aligned.
func normalize(s *fixture.Servers, out string) string {
	for _, r := range []struct{ re, with string }{
		{regexp.QuoteMeta(s.Reg.Host), "REGISTRY"},
		{`sha256:[0-9a-f]{64}`, "sha256:DIGEST"},
		{`\b[0-9a-f]{40}\b`, "COMMIT"},
		{`\b[0-9a-f]{12}\b`, "SHORT-COMMIT"},
		{`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)`, "YYYY-MM-DDThh:mm:ssZ"},
	} {
		out = regexp.MustCompile(r.re).ReplaceAllString(out, r.with)
	}
	return out
}

// TestCommandPaths runs every command that changes or reads the config repo through its
// success, nothing-to-do and refusal paths, in the order a team meets them, against a real git
// server and registry: deploy (automated and manual, dry run), policy refusals (manual-only
// environment, lock, --force), lock and unlock, rollback (to the previous release and to a
// tag), promote, and history's table and JSON (golden files).
func TestCommandPaths(t *testing.T) {
	t.Parallel()
	s := fixture.NewServers(t, fixture.App{
		Services: []string{"web", "api"}, Envs: map[string]string{"staging": "stg", "production": "prod"},
		OverlayImages: fixture.StagingImages,
		Policy:        "environments:\n  production:\n    automated: false # releases are manual\n",
	}, fixture.Options{})
	s.PushImage(t, "team/web", "1.0.0")
	s.PushImage(t, "team/web", "1.1.0")
	s.PushImage(t, "team/api", "2.0.0")
	web := func(tag string) []string { return []string{"--image", "web=" + s.Reg.Ref("team/web", tag)} }
	ref := func(tag string) string {
		return regexp.QuoteMeta("web="+s.Reg.Host+"/team/web:"+tag) + `@sha256:[0-9a-f]{64}`
	}
	result := func(cmd, env string, changed bool, rest string) string {
		line := `^` + cmd + ` env=` + env + ` changed=false commit=[0-9a-f]{40}`
		if changed {
			line = strings.Replace(line, "false", "true", 1)
		}
		if rest != "" {
			line += " " + rest
		}
		return line + `\n$`
	}
	// A GitLab push pipeline: automated, with a pipeline and an author.
	pipeline := []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=push", "CI_PROJECT_URL=https://gitlab.example.com/team/web",
		"CI_COMMIT_SHA=0123456789abcdef0123456789abcdef01234567", "CI_PIPELINE_URL=https://gitlab.example.com/team/web/-/pipelines/42",
		"GITLAB_USER_NAME=Ada", "GITLAB_USER_EMAIL=ada@example.com"}
	deployStaging := []string{"deploy", "--env", "staging", "--no-apply"}

	runScript(t, s, []pathStep{
		{name: "rollback before any release", args: []string{"rollback", "--env", "staging", "--image", "web", "--no-apply"},
			want: want{code: step.ExitUsage, stderr: errLine("environment staging: no earlier release of web in the config repo's history (0 deliver change(s) read); give --tag")}},
		{name: "deploy", env: pipeline, args: args(deployStaging, web("1.0.0")),
			want: want{code: 0, stdout: result("deploy", "staging", true, ref("1.0.0")), stderr: `web: .*/team/web:0\.9\.0 -> .*/team/web:1\.0\.0@sha256`}, moved: true},
		{name: "deploy again: nothing to do", env: pipeline, args: args(deployStaging, web("1.0.0")),
			want: want{code: 0, stdout: result("deploy", "staging", false, ref("1.0.0")), stderr: `already up to date at [0-9a-f]{12}: nothing to commit`}},
		{name: "deploy dry run", args: args(deployStaging, web("1.1.0"), []string{"--dry-run"}),
			want: want{code: 0, stdout: `(?s)^--- a/overlays/staging/kustomization.yaml\n\+\+\+ b/overlays/staging/kustomization.yaml\n.*-    newTag: "1.0.0" # first release\n.*\+    newTag: "1.1.0" # first release\n`}},
		{name: "deploy a tag the registry lacks", env: pipeline, args: args(deployStaging, web("9.9.9")),
			want: want{code: step.ExitImageNotFound, stderr: errLine("team/web:9.9.9")}},
		{name: "deploy to an environment without overlay", args: args([]string{"deploy", "--env", "qa", "--no-apply"}, web("1.0.0")),
			want: want{code: step.ExitUsage, stderr: errLine(`environment "qa": no overlay at overlays/qa in the config repo (overlays has: production, staging)`)}},
		{name: "automated deploy to a manual-only environment", env: pipeline, args: args([]string{"deploy", "--env", "production", "--no-apply"}, web("1.0.0")),
			want: want{code: step.ExitPolicy, stderr: errLine("environment production accepts only manual runs (deliver.yaml: environments.production.automated: false)")}},
		{name: "manual deploy to a manual-only environment", args: args([]string{"deploy", "--env", "production", "--no-apply"}, web("1.0.0")),
			want: want{code: 0, stdout: result("deploy", "production", true, ref("1.0.0"))}, moved: true},
		{name: "lock", args: []string{"lock", "--env", "staging", "--image", "web", "--reason", "incident 42"},
			want: want{code: 0, stdout: result("lock", "staging", true, "")}, moved: true},
		{name: "lock again: nothing to do", args: []string{"lock", "--env", "staging", "--image", "web", "--reason", "incident 42"},
			want: want{code: 0, stdout: result("lock", "staging", false, ""), stderr: "web was already locked in staging"}},
		{name: "automated deploy of a locked image", env: pipeline, args: args(deployStaging, web("1.1.0")),
			want: want{code: step.ExitPolicy, stderr: errLine("incident 42") + ".*; unlock it with .*, or override it in a manual run with DELIVER_FORCE=true"}}, // in GitLab CI, hints name the variables
		{name: "automated deploy may not force", env: pipeline, args: args(deployStaging, web("1.1.0"), []string{"--force"}),
			want: want{code: step.ExitUsage, stderr: errLine("DELIVER_FORCE overrides locks for manual runs only; an automated run never does")}},
		{name: "manual deploy forces the lock", args: args(deployStaging, web("1.1.0"), []string{"--force", "--reason", "hotfix"}),
			want: want{code: 0, stdout: result("deploy", "staging", true, ref("1.1.0")), stderr: "overriding the lock: .*incident 42.* \\(--force\\)"}, moved: true},
		{name: "unlock", args: []string{"unlock", "--env", "staging", "--image", "web"},
			want: want{code: 0, stdout: result("unlock", "staging", true, "")}, moved: true},
		{name: "unlock again: nothing to do", args: []string{"unlock", "--env", "staging", "--image", "web"},
			want: want{code: 0, stdout: result("unlock", "staging", false, ""), stderr: "web was not locked in staging"}},
		{name: "rollback to the previous release", args: []string{"rollback", "--env", "staging", "--image", "web", "--no-apply"},
			want: want{code: 0, stdout: result("rollback", "staging", true, ref("1.0.0")), stderr: `previous release: .*/team/web:1\.0\.0@sha256`}, moved: true},
		{name: "rollback to the tag it runs: nothing to do", args: []string{"rollback", "--env", "staging", "--image", "web", "--tag", "1.0.0", "--no-apply"},
			want: want{code: 0, stdout: result("rollback", "staging", false, ref("1.0.0"))}},
		{name: "rollback of an image the overlay lacks", args: []string{"rollback", "--env", "staging", "--image", "api", "--no-apply"},
			want: want{code: step.ExitUsage, stderr: errLine(`environment staging: overlay overlays/staging has no image "api" to roll back`)}},
		{name: "rollback to a tag the registry lacks", args: []string{"rollback", "--env", "staging", "--image", "web", "--tag", "0.1.0", "--no-apply"},
			want: want{code: step.ExitImageNotFound, stderr: errLine("team/web:0.1.0")}},
		{name: "automated promotion to a manual-only environment", env: pipeline, args: []string{"promote", "--from", "staging", "--to", "production", "--no-apply"},
			want: want{code: step.ExitPolicy, stderr: errLine("accepts only manual runs")}},
		{name: "promote an image the source lacks", args: []string{"promote", "--from", "staging", "--to", "production", "--image", "api", "--no-apply"},
			want: want{code: step.ExitUsage, stderr: errLine("--image api: environment staging has no override for it")}},
		{name: "promote: nothing to do", args: []string{"promote", "--from", "staging", "--to", "production", "--no-apply"},
			want: want{code: 0, stdout: result("promote", "production", false, ref("1.0.0"))}},
		{name: "deploy api to staging", args: args(deployStaging, []string{"--image", "api=" + s.Reg.Ref("team/api", "2.0.0")}),
			want: want{code: 0, stdout: result("deploy", "staging", true, regexp.QuoteMeta("api="+s.Reg.Host+"/team/api:2.0.0")+`@sha256:[0-9a-f]{64}`)}, moved: true},
		{name: "promote", args: []string{"promote", "--from", "staging", "--to", "production", "--no-apply"},
			want: want{code: 0, stdout: result("promote", "production", true, ref("1.0.0")+" "+regexp.QuoteMeta("api="+s.Reg.Host+"/team/api:2.0.0")+`@sha256:[0-9a-f]{64}`)}, moved: true},
		{name: "history of an environment without changes", args: []string{"history", "--env", "qa"},
			want: want{code: 0, stdout: `^TIME +ACTION +IMAGE +FROM +TO +TRIGGER +AUTHOR +COMMIT +PIPELINE\n$`}},
		{name: "history as JSON of an environment without changes", args: []string{"history", "--env", "qa", "--json"},
			want: want{code: 0, stdout: `^\[\]\n$`}},
		{name: "history limited to one image and three changes", args: []string{"history", "--env", "staging", "--image", "web", "--limit", "3"},
			want: want{code: 0, stdout: `^TIME .*\n\S+ +rollback +web +1\.1\.0 +1\.0\.0 .*\n\S+ +unlock +web +- +manual .*\n\S+ +deploy +web +1\.0\.0 +1\.1\.0 +manual \(forced\) .*\n$`}},
	})

	// The history, as people and programs read it.
	for _, tt := range []struct{ golden, format string }{{"history/staging.txt", ""}, {"history/staging.json", "--json"}} {
		r := run(t, nil, args([]string{"history", "--env", "staging", tt.format}, s.GitArgs())...)
		if tt.format == "" {
			r = run(t, nil, args([]string{"history", "--env", "staging"}, s.GitArgs())...)
		}
		if r.code != 0 {
			t.Fatalf("history:\n%s", r)
		}
		golden(t, tt.golden, normalize(s, r.stdout))
	}
}

// TestCIReports: the reports go where the run's environment says, relative paths against the
// run's working directory: GitLab's dotenv report (deliver.env by default, or --dotenv),
// GitHub's step outputs and job summary, the JSON report (--report).
func TestCIReports(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.0.0")
	s.PushImage(t, "team/web", "1.1.0")
	tests := []struct {
		name  string
		env   []string
		tag   string
		files map[string]string // file in the working directory -> a line it must hold
	}{
		{"GitLab default dotenv", []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=web"}, "1.0.0", map[string]string{"deliver.env": "DELIVER_CHANGED=true"}},
		{"GitLab --dotenv", []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=web", "DELIVER_DOTENV=reports/deploy.env"}, "1.1.0", map[string]string{"reports/deploy.env": "DELIVER_CHANGED=true"}},
		{"GitHub", []string{"GITHUB_ACTIONS=true", "GITHUB_EVENT_NAME=workflow_dispatch", "GITHUB_OUTPUT=out/output", "GITHUB_STEP_SUMMARY=out/summary.md"}, "1.0.0",
			map[string]string{"out/output": "changed", "out/summary.md": "staging"}},
		{"--report", []string{"DELIVER_REPORT=reports/deploy.json"}, "1.1.0", map[string]string{"reports/deploy.json": `"changed": true`}},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "reports"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
			t.Fatal(err)
		}
		r := runIn(t, dir, tt.env, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", tt.tag)}, s.GitArgs())...)
		if r.code != 0 {
			t.Errorf("%s: deploy:\n%s", tt.name, r)
			continue
		}
		for file, line := range tt.files {
			b, err := os.ReadFile(filepath.Join(dir, file))
			if err != nil || !strings.Contains(string(b), line) {
				t.Errorf("%s: %s in the working directory: %v\n%s", tt.name, file, err, b)
			}
		}
	}
}

package step_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step/ci"
)

// githubRun returns the environment of a GitHub Actions run whose job summary goes to a
// file (the step outputs are checked in step/ci and hack/citest; here the JSON report says
// what they would), and readers of the summary and the JSON report.
func githubRun(t *testing.T, extra ...string) (env []string, report func() ci.Report, summary func() string) {
	t.Helper()
	dir := t.TempDir()
	rep, sum := filepath.Join(dir, "report.json"), filepath.Join(dir, "summary")
	env = append([]string{"GITHUB_ACTIONS=true", "GITHUB_STEP_SUMMARY=" + sum, "DELIVER_REPORT=" + rep}, extra...)
	report = func() ci.Report { return readReport(t, rep) }
	summary = func() string {
		b, _ := os.ReadFile(sum)
		return string(b)
	}
	return env, report, summary
}

// readReport reads a JSON report.
func readReport(t *testing.T, path string) ci.Report {
	t.Helper()
	var r ci.Report
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r
}

// TestErrorPathsInConfigRepo: an error about a file of the config repo names it by its path
// in the repo, never by the temporary clone's, in the message and the annotation; the
// annotation carries file= and line= only when the config repo is the workflow's own
// repository, and links the file at the commit deliver read when the forge is known (here
// the CI's server, GITHUB_SERVER_URL, is the test git server).
func TestErrorPathsInConfigRepo(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(files map[string]string)
		// file and line the error is about ("" when it is about no file of the repo).
		file, line string
	}{
		{name: "duplicate image entry", edit: func(f map[string]string) {
			f["overlays/staging/kustomization.yaml"] += "  - name: web\n    newTag: x\n"
		},
			file: "overlays/staging/kustomization.yaml", line: "14"},
		{name: "YAML syntax", edit: func(f map[string]string) { f["overlays/staging/kustomization.yaml"] += "\n  bad: [\n" },
			file: "overlays/staging/kustomization.yaml", line: "10"},
		{name: "missing resource", edit: func(f map[string]string) {
			f["overlays/staging/kustomization.yaml"] = strings.Replace(f["overlays/staging/kustomization.yaml"], "namespace.yaml", "nope.yaml", 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := fixture.NewServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages}, fixture.Options{Edit: tt.edit})
			s.PushImage(t, "team/web", "1.4.3")
			head := s.Head(t)
			for _, repo := range []string{"config", "acme/web"} { // the workflow's repository
				env, _, summary := githubRun(t, "GITHUB_SERVER_URL="+s.Git.URL, "GITHUB_REPOSITORY="+repo)
				r := run(t, env, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, s.GitArgs())...)
				if r.code != 2 {
					t.Fatalf("exit %d, want 2\n%s", r.code, r)
				}
				if strings.Contains(r.stderr, "deliver-config-") || strings.Contains(summary(), "deliver-config-") {
					t.Errorf("the temporary clone's path shows:\n%s\n%s", r.stderr, summary())
				}
				annotation := regexp.MustCompile(`(?m)^::error (.*)::(.*)$`).FindStringSubmatch(r.stderr)
				if annotation == nil {
					t.Fatalf("no ::error annotation:\n%s", r)
				}
				link := s.Git.URL + "/config/blob/" + head + "/" + tt.file + "#L" + tt.line
				switch {
				case tt.file == "":
					if strings.Contains(annotation[1], "file=") {
						t.Errorf("annotation %q names a file", annotation[0])
					}
				case repo == "config":
					if want := "file=" + tt.file + ",line=" + tt.line + ","; !strings.Contains(annotation[1], want) {
						t.Errorf("annotation %q lacks %s", annotation[0], want)
					}
					fallthrough
				default:
					if repo != "config" && strings.Contains(annotation[1], "file=") {
						t.Errorf("annotation %q names a file of another repository than the workflow's", annotation[0])
					}
					if !strings.HasPrefix(annotation[2], tt.file+":"+tt.line+": ") || !strings.Contains(annotation[2], "%0Ain the config repo: "+link) {
						t.Errorf("annotation %q: want the message about %s:%s and the link %s", annotation[0], tt.file, tt.line, link)
					}
					if !strings.Contains(summary(), "| Error in | ["+tt.file+":"+tt.line+"]("+link+") |") {
						t.Errorf("the summary does not link %s:\n%s", link, summary())
					}
				}
			}
		})
	}
}

// TestDryRunReported: a dry run's summary says it is one and shows the overlay diff; the JSON
// report (here in GitLab) carries the diff, and no config commit.
func TestDryRunReported(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	digest := s.PushImage(t, "team/web", "1.4.3")
	before := s.Head(t)
	deploy := args([]string{"deploy", "--env", "staging", "--dry-run", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, s.GitArgs())
	env, _, summary := githubRun(t)
	r := run(t, env, deploy...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r)
	}
	diff := r.stdout[:strings.LastIndex(r.stdout, "deploy env=staging")]
	if !strings.Contains(diff, "+    digest: "+digest) {
		t.Fatalf("stdout has no diff:\n%s", r.stdout)
	}
	sum := summary()
	for _, want := range []string{"### deliver deploy dry run: nothing was pushed or applied", "| Would change | true |", "```diff\n" + diff} {
		if !strings.Contains(sum, want) {
			t.Errorf("summary lacks %q:\n%s", want, sum)
		}
	}
	for _, bad := range []string{"succeeded", "| Changed |"} {
		if strings.Contains(sum, bad) {
			t.Errorf("the dry run's summary says %q:\n%s", bad, sum)
		}
	}

	dir := t.TempDir()
	r = run(t, []string{"GITLAB_CI=true", "DELIVER_DOTENV=" + filepath.Join(dir, "deliver.env"), "DELIVER_REPORT=" + filepath.Join(dir, "deliver-staging.json")}, deploy...)
	if r.code != 0 {
		t.Fatalf("gitlab: exit %d\n%s", r.code, r)
	}
	if rep := readReport(t, filepath.Join(dir, "deliver-staging.json")); !rep.DryRun || rep.Diff != diff || !rep.Changed || rep.ConfigCommit.SHA != "" {
		t.Errorf("JSON report: %+v", rep)
	}
	if s.Head(t) != before {
		t.Error("a dry run pushed")
	}
}

// TestDotenvOfTwoJobs: the dotenv reports of two deliver jobs, given to one later job (GitLab
// applies them one after the other: the last wins), keep each job's values under its own keys,
// and the report of one job alone keeps the unprefixed keys.
func TestDotenvOfTwoJobs(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg", "production": "prod"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.4.3", "1.4.4")
	dir := t.TempDir()
	reports := map[string]map[string]string{}
	heads := map[string]string{}
	for _, job := range []struct{ env, tag string }{{"staging", "1.4.4"}, {"production", "1.4.3"}} {
		path := filepath.Join(dir, job.env+".env")
		r := run(t, []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=web", "DELIVER_DOTENV=" + path},
			args([]string{"deploy", "--env", job.env, "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", job.tag)}, s.GitArgs())...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s", job.env, r.code, r)
		}
		heads[job.env] = s.Head(t)
		reports[job.env] = readDotenv(t, path)
	}
	later := map[string]string{}
	for _, env := range []string{"staging", "production"} {
		for k, v := range reports[env] {
			later[k] = v
		}
	}
	for env, prefix := range map[string]string{"staging": "DELIVER_STAGING_", "production": "DELIVER_PRODUCTION_"} {
		if later[prefix+"COMMIT_SHA"] != heads[env] {
			t.Errorf("%sCOMMIT_SHA = %q, want %s's commit %s", prefix, later[prefix+"COMMIT_SHA"], env, heads[env])
		}
	}
	if !strings.Contains(later["DELIVER_STAGING_IMAGE_REF"], ":1.4.4@") || !strings.Contains(later["DELIVER_PRODUCTION_IMAGE_REF"], ":1.4.3@") {
		t.Errorf("image refs mixed up: %v", later)
	}
	if reports["staging"]["DELIVER_COMMIT_SHA"] != heads["staging"] {
		t.Errorf("one job's report: DELIVER_COMMIT_SHA = %q, want %s", reports["staging"]["DELIVER_COMMIT_SHA"], heads["staging"])
	}

	// A prefix of one's own, and a bad one refused before anything is done.
	path := filepath.Join(dir, "own.env")
	r := run(t, []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=web", "DELIVER_DOTENV=" + path, "DELIVER_DOTENV_PREFIX=STG_"},
		args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.4")}, s.GitArgs())...)
	if got := readDotenv(t, path); r.code != 0 || got["STG_COMMIT_SHA"] != heads["production"] || got["DELIVER_STAGING_COMMIT_SHA"] != "" {
		t.Errorf("with DELIVER_DOTENV_PREFIX=STG_: %v\n%s", got, r)
	}
	r = run(t, []string{"GITLAB_CI=true", "DELIVER_DOTENV=" + path, "DELIVER_DOTENV_PREFIX=1-bad"},
		args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.4")}, s.GitArgs())...)
	if r.code != 2 || !strings.Contains(r.stderr, `DELIVER_DOTENV_PREFIX "1-bad": want the start of a variable name`) {
		t.Errorf("a bad prefix: %s", r)
	}
}

func readDotenv(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

// TestCommitURLSelfHosted: the config commit is linked for a config repo on the CI's own
// self-hosted forge, reached over HTTP or SSH (here the test git server stands for a GitLab at
// CI_SERVER_URL, and for a GitHub Enterprise Server at GITHUB_SERVER_URL).
func TestCommitURLSelfHosted(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.4.3", "1.4.4", "1.4.5")
	ssh := testenv.NewSSHServer(t, s.Git)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, ssh.ClientKeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	sshArgs := []string{"--config-repo", ssh.RepoURL("config"), "--ssh-key-file", keyFile, "--ssh-host-key", ssh.HostKey}
	for _, tt := range []struct {
		name, tag string
		env       []string
		repo      []string
		want      string // the link before the commit
	}{
		{"gitlab over http", "1.4.3", []string{"GITLAB_CI=true", "CI_SERVER_URL=" + s.Git.URL}, s.GitArgs(), s.Git.URL + "/config/-/commit/"},
		{"gitlab over ssh", "1.4.4", []string{"GITLAB_CI=true", "CI_SERVER_URL=" + s.Git.URL}, sshArgs, s.Git.URL + "/config/-/commit/"},
		{"github enterprise over ssh", "1.4.5", []string{"GITHUB_SERVER_URL=" + s.Git.URL, "GITHUB_REPOSITORY=acme/web"}, sshArgs, s.Git.URL + "/config/commit/"},
	} {
		dotenv := filepath.Join(t.TempDir(), "deliver.env")
		env, report, _ := githubRun(t, tt.env...)
		if strings.HasPrefix(tt.env[0], "GITLAB_CI") {
			env = append(tt.env, "CI_PIPELINE_SOURCE=web", "DELIVER_DOTENV="+dotenv)
		}
		r := run(t, env, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", tt.tag)}, tt.repo)...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d\n%s", tt.name, r.code, r)
		}
		var got string
		if strings.HasPrefix(tt.env[0], "GITLAB_CI") {
			got = readDotenv(t, dotenv)["DELIVER_COMMIT_URL"]
		} else {
			got = report().ConfigCommit.URL
		}
		if want := tt.want + s.Head(t); got != want {
			t.Errorf("%s: commit URL %q, want %q", tt.name, got, want)
		}
	}
}

// TestHintsNameWhatCISets: the hints of a refusal name what the user sets where deliver runs:
// the action's inputs, GitLab's variables, the flags on the command line.
func TestHintsNameWhatCISets(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg", "production": "prod"}, OverlayImages: fixture.StagingImages,
		Policy: "environments:\n  production:\n    automated: false\nlocks:\n  - environment: staging\n    image: web\n    reason: incident 42\n"})
	s.PushImage(t, "team/web", "1.4.3")
	deploy := func(env string) []string {
		return args([]string{"deploy", "--env", env, "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, s.GitArgs())
	}
	action := []string{"GITHUB_ACTIONS=true", "INPUT_COMMAND=deploy", "GITHUB_EVENT_NAME=push"}
	for _, tt := range []struct {
		name     string
		env      []string
		deployTo string
		want     []string
		notWant  string
	}{
		{"action, lock", action, "staging", []string{"unlock it with the action with command: unlock, environment: staging, images: web", "in a manual run with force: true"}, "--force"},
		{"action, manual only", action, "production", []string{"or give trigger: manual"}, "--trigger"},
		{"gitlab, lock", []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=push"}, "staging", []string{"unlock it with deliver unlock with DELIVER_ENV=staging, DELIVER_IMAGE=web", "in a manual run with DELIVER_FORCE=true"}, "--force"},
		{"gitlab, manual only", []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=push"}, "production", []string{"or give DELIVER_TRIGGER=manual"}, "--trigger"},
		{"command line, lock", []string{"DELIVER_TRIGGER=automated"}, "staging", []string{"unlock it with `deliver unlock --env staging --image web`", "in a manual run with --force"}, "DELIVER_FORCE"},
	} {
		r := run(t, tt.env, deploy(tt.deployTo)...)
		if r.code != 8 {
			t.Errorf("%s: exit %d, want 8\n%s", tt.name, r.code, r)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", tt.name, w, r.stderr)
			}
		}
		if strings.Contains(r.stderr, tt.notWant) {
			t.Errorf("%s: stderr names %s:\n%s", tt.name, tt.notWant, r.stderr)
		}
	}
	// A hint from another package (the config repo's client) is named the same way.
	for env, want := range map[string]string{"GITLAB_CI=true": "(DELIVER_SSH_KEY)", "INPUT_COMMAND=deploy": "(ssh_key)"} {
		ciEnv := []string{env}
		if env == "INPUT_COMMAND=deploy" {
			ciEnv = append(ciEnv, "GITHUB_ACTIONS=true")
		}
		r := run(t, ciEnv, "deploy", "--env", "staging", "--no-apply", "--image", "web="+s.Reg.Ref("team/web", "1.4.3"),
			"--config-repo", "git@127.0.0.1:config.git")
		if !strings.Contains(r.stderr, "an SSH URL needs an SSH private key "+want) {
			t.Errorf("%s: stderr lacks %s:\n%s", env, want, r)
		}
	}
}

// TestActionInputWins: running as the GitHub Action, the environment input wins over a
// DELIVER_ENV the workflow's env: sets (the runner then leaves runs.env's DELIVER_ENV alone),
// with a warning; an input left at its default gives way to the variable.
func TestActionInputWins(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg", "production": "prod"}, OverlayImages: fixture.StagingImages})
	digest := s.PushImage(t, "team/web", "1.4.3")
	prodBefore := s.File(t, "overlays/production/kustomization.yaml")
	env, _, _ := githubRun(t, "INPUT_COMMAND=deploy", "INPUT_ENVIRONMENT=staging", "DELIVER_ENV=production",
		"INPUT_IMAGES=web="+s.Reg.Ref("team/web", "1.4.3"), "DELIVER_IMAGE=web="+s.Reg.Ref("team/web", "1.4.3"),
		"INPUT_NO_APPLY=false", "DELIVER_NO_APPLY=true", // left at its default: the variable is used
		"INPUT_BRANCH=main", "DELIVER_BRANCH=main")
	r := run(t, env, args([]string{"deploy"}, s.GitArgs())...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r)
	}
	if !strings.Contains(s.File(t, "overlays/staging/kustomization.yaml"), digest) {
		t.Error("staging, the input's environment, was not deployed")
	}
	if s.File(t, "overlays/production/kustomization.yaml") != prodBefore {
		t.Error("production, the job environment's DELIVER_ENV, was deployed")
	}
	for _, want := range []string{"::warning::the environment input is used, not DELIVER_ENV", "no_apply: DELIVER_NO_APPLY from the job's environment is used"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
}

// TestJSONReportUnwritable: a JSON report that cannot be written ends a deploy that pushed
// with exit 10, naming the file; the push stays.
func TestJSONReportUnwritable(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.4.3")
	dir := t.TempDir()
	old := s.Head(t)
	r := run(t, []string{"DELIVER_REPORT=" + dir}, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, s.GitArgs())...)
	if r.code != 10 || !strings.Contains(r.stderr, "writing the JSON report "+dir+": open "+dir+": is a directory") {
		t.Errorf("exit %d, want 10 naming the file\n%s", r.code, r)
	}
	if s.Head(t) == old {
		t.Error("the deploy was not pushed")
	}
}

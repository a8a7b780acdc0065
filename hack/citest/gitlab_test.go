package citest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/deliverhq/deliver/internal/testenv"
)

// gitlabProject is a temporary app project for gitlab-ci-local: a git repository on main with
// an origin remote (gitlab-ci-local derives CI_SERVER_*, CI_PROJECT_* and component locality
// from it) holding the given files.
type gitlabProject struct {
	dir  string
	sha  string
	home string
	bin  string // directory put first on PATH: holds deliver
}

func newGitLabProject(t *testing.T, origin string, files map[string]string) *gitlabProject {
	t.Helper()
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Fatalf("gitlab-ci-local needs rsync (.ci/run installs it): %v", err)
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatalf("gitlab-ci-local needs bash: %v", err)
	}
	p := &gitlabProject{dir: t.TempDir(), home: t.TempDir(), bin: t.TempDir()}
	for rel, src := range files {
		data, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(src)))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(p.dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	env := cleanEnv(p.home, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.test",
		"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.test")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main"},
		{"config", "user.name", "Ada Lovelace"},
		{"config", "user.email", "ada@example.test"},
		{"remote", "add", "origin", origin},
		{"add", "-A"},
		{"commit", "-q", "-m", "app"},
		{"update-ref", "refs/remotes/origin/main", "HEAD"},
		{"symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main"},
	} {
		if out, err := run(ctx, p.dir, env, "git", args...); err != nil {
			t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	out, err := run(ctx, p.dir, env, "git", "rev-parse", "HEAD")
	if err != nil {
		t.Fatal(err)
	}
	p.sha = strings.TrimSpace(out)
	// deliver on PATH, as the image has it.
	if err := os.Symlink(deliver(t), filepath.Join(p.bin, "deliver")); err != nil {
		t.Fatal(err)
	}
	return p
}

// gcl runs gitlab-ci-local in the project with the shell executor and returns its output.
func (p *gitlabProject) gcl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	node := nodeBin(t)
	gcl := tool(t, "gitlab-ci-local/dist/index.js")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env := cleanEnv(p.home, "NO_COLOR=1")
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			env[i] = "PATH=" + p.bin + string(os.PathListSeparator) + strings.TrimPrefix(kv, "PATH=")
		}
	}
	return run(ctx, p.dir, env, node, append([]string{gcl}, args...)...)
}

// jobs lists the jobs gitlab-ci-local would run for the given variables (KEY=VALUE) and flags
// (--input key=value), with their when.
func (p *gitlabProject) jobs(t *testing.T, vars ...string) map[string]string {
	t.Helper()
	args := []string{"--list-json"}
	for i := 0; i < len(vars); i++ {
		if strings.HasPrefix(vars[i], "--") && i+1 < len(vars) {
			args = append(args, vars[i], vars[i+1])
			i++
			continue
		}
		args = append(args, "--variable", vars[i])
	}
	out, err := p.gcl(t, args...)
	if err != nil {
		t.Fatalf("gitlab-ci-local --list-json %v: %v\n%s", vars, err, out)
	}
	loc := regexp.MustCompile(`(?m)^\[`).FindStringIndex(out)
	if loc == nil {
		t.Fatalf("gitlab-ci-local --list-json printed no JSON:\n%s", out)
	}
	var list []struct {
		Name string `json:"name"`
		When string `json:"when"`
	}
	if err := json.Unmarshal([]byte(out[loc[0]:]), &list); err != nil {
		t.Fatalf("gitlab-ci-local --list-json: %v\n%s", err, out)
	}
	jobs := map[string]string{}
	for _, j := range list {
		if j.When != "never" {
			jobs[j.Name] = j.When
		}
	}
	return jobs
}

// readJobLog returns the log gitlab-ci-local kept of a job.
func (p *gitlabProject) readJobLog(t *testing.T, job string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(p.dir, ".gitlab-ci-local", "output", job+".log"))
	if err != nil {
		t.Fatalf("job log of %s: %v", job, err)
	}
	return string(data)
}

// dotenv returns the dotenv report a job left as an artifact.
func (p *gitlabProject) dotenv(t *testing.T, job string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(p.dir, ".gitlab-ci-local", "artifacts", job, ".gitlab-ci-reports", "dotenv", "deliver.env"))
	if err != nil {
		t.Fatalf("dotenv report of %s: %v", job, err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || !regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`).MatchString(k) {
			t.Fatalf("dotenv report of %s: malformed line %q", job, l)
		}
		env[k] = v
	}
	return env
}

// checkSections checks the job log shows deliver's phases as collapsible sections:
// gitlab-ci-local recognises GitLab's section_start/section_end markers and logs
// "<name>_started" and "<name> took <n>ms" in their place; a malformed marker stays raw.
func checkSections(t *testing.T, job, log string, phases ...string) {
	t.Helper()
	if strings.Contains(log, "section_start:") || strings.Contains(log, "section_end:") {
		t.Errorf("%s: raw section markers in the log (malformed?)", job)
	}
	for _, p := range phases {
		started := regexp.MustCompile(`(?m)^deliver_` + p + `_(\d+)_started$`).FindStringSubmatch(log)
		if started == nil {
			t.Errorf("%s: no section for phase %s", job, p)
			continue
		}
		if !regexp.MustCompile(`(?m)^deliver_` + p + `_` + started[1] + ` took \d+ms$`).MatchString(log) {
			t.Errorf("%s: section deliver_%s_%s never ends", job, p, started[1])
		}
	}
}

// TestGitLabTemplate runs examples/gitlab/.gitlab-ci.yml, which includes .gitlab-ci-template.yml,
// with gitlab-ci-local's shell executor (image: is ignored; the script calls the deliver on
// PATH) against the test git server, registry and control plane: the staging deploy of a push
// pipeline on the default branch, then the rollback job of a web pipeline given DELIVER_TAG.
func TestGitLabTemplate(t *testing.T) {
	t.Parallel()
	p := newGitLabProject(t, "https://gitlab.example.com/acme/web.git", map[string]string{
		".gitlab-ci.yml":          "examples/gitlab/.gitlab-ci.yml",
		".gitlab-ci-template.yml": ".gitlab-ci-template.yml",
	})

	// Which jobs each kind of pipeline gets.
	t.Run("rules", func(t *testing.T) {
		t.Parallel()
		push := p.jobs(t)
		want := map[string]string{"build": "on_success", "deliver-staging": "on_success", "deliver-production": "manual"}
		if !equalMaps(push, want) {
			t.Errorf("push pipeline on main: jobs %v, want %v", push, want)
		}
		web := p.jobs(t, "CI_PIPELINE_SOURCE=web", "DELIVER_TAG=1.0.0")
		if want := map[string]string{"deliver-rollback": "on_success"}; !equalMaps(web, want) {
			t.Errorf("web pipeline with DELIVER_TAG: jobs %v, want %v", web, want)
		}
		frozen := p.jobs(t, "CI_DEPLOY_FREEZE=1")
		if want := map[string]string{"build": "on_success"}; !equalMaps(frozen, want) {
			t.Errorf("push pipeline during a deploy freeze: jobs %v, want %v", frozen, want)
		}
		branch := p.jobs(t, "CI_COMMIT_BRANCH=feature")
		if want := map[string]string{"build": "on_success"}; !equalMaps(branch, want) {
			t.Errorf("push pipeline on a feature branch: jobs %v, want %v", branch, want)
		}
	})

	// The Auto Deploy-style switches: a CI/CD variable turns a job off; "false" does not.
	t.Run("switches", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			vars []string
			want map[string]string
		}{
			{[]string{"DELIVER_STAGING_DISABLED=true"}, map[string]string{"build": "on_success", "deliver-production": "manual"}},
			{[]string{"DELIVER_STAGING_DISABLED=false"}, map[string]string{"build": "on_success", "deliver-staging": "on_success", "deliver-production": "manual"}},
			{[]string{"DELIVER_PRODUCTION_DISABLED=1"}, map[string]string{"build": "on_success", "deliver-staging": "on_success"}},
			{[]string{"CI_PIPELINE_SOURCE=web", "DELIVER_TAG=1.0.0", "DELIVER_ROLLBACK_DISABLED=yes"}, map[string]string{}},
		} {
			if got := p.jobs(t, tc.vars...); !equalMaps(got, tc.want) {
				t.Errorf("%v: jobs %v, want %v", tc.vars, got, tc.want)
			}
		}
	})

	// A rollback through the pipeline inputs, where pipeline variables are not allowed: the
	// app's inputs reach the template's, and select the rollback job and its environment.
	t.Run("rollback_inputs", func(t *testing.T) {
		t.Parallel()
		web := p.jobs(t, "CI_PIPELINE_SOURCE=web", "--input", "rollback_tag=1.0.0")
		if want := map[string]string{"deliver-rollback": "on_success"}; !equalMaps(web, want) {
			t.Errorf("web pipeline with the input rollback_tag: jobs %v, want %v", web, want)
		}
		out, err := p.gcl(t, "--preview", "--input", "rollback_tag=1.0.0", "--input", "rollback_environment=staging")
		if err != nil {
			t.Fatalf("gitlab-ci-local --preview: %v\n%s", err, out)
		}
		jobs := parseJobs(t, out[strings.Index(out, "\n---\n")+5:])
		vars, _ := jobs["deliver-rollback"]["variables"].(map[string]any)
		if vars["DELIVER_TAG"] != "1.0.0" || vars["DELIVER_ENV"] != "staging" {
			t.Errorf("deliver-rollback with the inputs: variables %v, want DELIVER_TAG=1.0.0 DELIVER_ENV=staging", vars)
		}
		// Without inputs, a push pipeline's jobs carry no tag.
		out, err = p.gcl(t, "--preview")
		if err != nil {
			t.Fatalf("gitlab-ci-local --preview: %v\n%s", err, out)
		}
		jobs = parseJobs(t, out[strings.Index(out, "\n---\n")+5:])
		vars, _ = jobs["deliver-staging"]["variables"].(map[string]any)
		if vars["DELIVER_TAG"] != "" {
			t.Errorf("deliver-staging: DELIVER_TAG=%v in a push pipeline", vars["DELIVER_TAG"])
		}
	})

	// Production needs staging only when staging is in the pipeline: with staging switched
	// off, or ruled out by the app (a project without staging), GitLab must still create the
	// pipeline. gitlab-ci-local resolves needs: as GitLab does, refusing a job whose needed job
	// is not in the pipeline unless the need is optional.
	t.Run("production_without_staging", func(t *testing.T) {
		t.Parallel()
		example, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "gitlab", ".gitlab-ci.yml"))
		if err != nil {
			t.Fatal(err)
		}
		noStaging := strings.Replace(string(example), "\ndeliver-staging:\n", "\ndeliver-staging:\n  rules: [{when: never}]\n", 1)
		q := newGitLabProject(t, "https://gitlab.example.com/acme/web.git", map[string]string{
			".gitlab-ci-template.yml": ".gitlab-ci-template.yml",
		})
		if err := os.WriteFile(filepath.Join(q.dir, ".gitlab-ci.yml"), []byte(noStaging), 0o644); err != nil {
			t.Fatal(err)
		}
		// A project of its own for each run: deploy_and_rollback runs jobs in p meanwhile.
		r := newGitLabProject(t, "https://gitlab.example.com/acme/web.git", map[string]string{
			".gitlab-ci.yml":          "examples/gitlab/.gitlab-ci.yml",
			".gitlab-ci-template.yml": ".gitlab-ci-template.yml",
		})
		for _, c := range []struct {
			p    *gitlabProject
			vars []string
		}{{r, []string{"DELIVER_STAGING_DISABLED=true"}}, {q, nil}} {
			args := []string{"deliver-production", "--needs", "--manual", "deliver-production", "--force-shell-executor", "--no-shell-isolation"}
			for _, v := range c.vars {
				args = append(args, "--variable", v)
			}
			// deliver itself fails here (no config repo): what matters is that the job runs.
			out, _ := c.p.gcl(t, args...)
			if strings.Contains(out, "but its needed by") || regexp.MustCompile(`needs: \[.*\] for .* could not be found`).MatchString(out) {
				t.Errorf("%v: production without staging is refused:\n%s", c.vars, out)
			}
			if _, err := os.Stat(filepath.Join(c.p.dir, ".gitlab-ci-local", "output", "deliver-production.log")); err != nil {
				t.Errorf("%v: deliver-production did not run: %v\n%s", c.vars, err, out)
			}
		}
	})

	t.Run("deploy_and_rollback", func(t *testing.T) {
		t.Parallel()
		cluster := testenv.SharedCluster(t)
		gitPass, regPass := sentinel(t, "git-token"), sentinel(t, "registry-password")
		git := testenv.NewGitServer(t, testenv.WithCredentials("project_42_bot", gitPass))
		reg := testenv.NewRegistry(t, testenv.WithBasicAuth("gitlab-ci-token", regPass))
		repo := newConfigRepo(t, git, "acme/config")
		old, err := reg.PushRandomImage("acme/web", "1.0.0")
		if err != nil {
			t.Fatal(err)
		}
		build, err := reg.PushRandomImage("acme/web", p.sha)
		if err != nil {
			t.Fatal(err)
		}
		ns := repo.Namespaces["staging"]
		vars := []string{
			// gitlab-ci-local says GITLAB_CI=false; a runner says true, which is what deliver reads.
			"GITLAB_CI=true",
			"CI_REGISTRY=" + reg.Host,
			"CI_REGISTRY_IMAGE=" + reg.Host + "/acme/web",
			"CI_REGISTRY_USER=gitlab-ci-token",
			"CI_REGISTRY_PASSWORD=" + regPass,
			"DELIVER_CONFIG_REPO=" + repo.URL,
			"DELIVER_GIT_USERNAME=project_42_bot",
			"DELIVER_GIT_TOKEN=" + gitPass,
			"KUBECONFIG=" + cluster.Kubeconfig,
			"DELIVER_KUBE_CONTEXT=deliver-test",
			"DELIVER_TIMEOUT=90s",
		}
		secrets := map[string]string{"DELIVER_GIT_TOKEN": gitPass, "CI_REGISTRY_PASSWORD": regPass}
		runJobErr := func(job string, extra ...string) (string, string, error) {
			t.Helper()
			args := []string{job, "--force-shell-executor", "--no-shell-isolation"}
			for i := 0; i < len(extra); i++ {
				if strings.HasPrefix(extra[i], "--") {
					args = append(args, extra[i], extra[i+1])
					i++
					continue
				}
				args = append(args, "--variable", extra[i])
			}
			for _, v := range vars {
				args = append(args, "--variable", v)
			}
			start := time.Now()
			out, err := p.gcl(t, args...)
			t.Logf("gitlab-ci-local %s: %s", job, time.Since(start).Round(10*time.Millisecond))
			log := p.readJobLog(t, job)
			for what, s := range secrets {
				if strings.Contains(out, s) || strings.Contains(log, s) {
					t.Errorf("%s: the secret %s shows in the job log", job, what)
				}
			}
			return log, out, err
		}
		runJob := func(job string, extra ...string) string {
			t.Helper()
			log, out, err := runJobErr(job, extra...)
			if err != nil {
				t.Fatalf("gitlab-ci-local %s: %v\n%s", job, err, out)
			}
			return log
		}

		// 1. A push pipeline on main: deliver-staging deploys this commit's build.
		commits := repo.Commits(t)
		log := runJob("deliver-staging")
		checkSections(t, "deliver-staging", log, "verify", "clone", "push", "apply", "wait")
		if got := repo.Commits(t); got != commits+1 {
			t.Errorf("deliver-staging: %d new config commits, want 1", got-commits)
		}
		head := repo.Head(t)
		kust := repo.File(t, "overlays/staging/kustomization.yaml")
		if !strings.Contains(kust, `newTag: "`+p.sha+`"`) && !strings.Contains(kust, "newTag: "+p.sha) || !strings.Contains(kust, build) {
			t.Errorf("overlays/staging/kustomization.yaml does not pin %s@%s:\n%s", p.sha, build, kust)
		}
		env := p.dotenv(t, "deliver-staging")
		wantEnv(t, "deliver-staging", env, map[string]string{
			"DELIVER_CHANGED": "true", "DELIVER_COMMIT_SHA": head, "DELIVER_IMAGE_DIGEST": build,
			"DELIVER_URL": "https://staging.example.com", "DELIVER_ROLLOUT": "ready",
		})
		checkDotenvSecrets(t, "deliver-staging", env, secrets)
		image, ready := runningImage(t, cluster, ns)
		if want := reg.Ref("acme/web", p.sha) + "@" + build; image != want || ready != "2/2" {
			t.Errorf("after deliver-staging: %s runs %s with %s ready, want %s with 2/2", ns, image, ready, want)
		}

		// 2. A web pipeline with DELIVER_TAG: deliver-rollback takes staging back to 1.0.0. This
		// time the kubeconfig comes as content in a variable (one line of JSON, which is YAML),
		// as a masked CI/CD variable would hold it.
		raw, err := os.ReadFile(cluster.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		kubeJSON, err := sigsyaml.YAMLToJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		secrets["client-key-data of DELIVER_KUBECONFIG_DATA"] = kubeconfigKey(t, raw)
		log = runJob("deliver-rollback", "CI_PIPELINE_SOURCE=web", "DELIVER_TAG=1.0.0", "DELIVER_ENV=staging",
			"KUBECONFIG=", "DELIVER_KUBECONFIG_DATA="+string(kubeJSON))
		checkSections(t, "deliver-rollback", log, "clone", "push", "apply", "wait")
		if got := repo.Commits(t); got != commits+2 {
			t.Errorf("deliver-rollback: %d config commits in all, want %d", got, commits+2)
		}
		kust = repo.File(t, "overlays/staging/kustomization.yaml")
		if !strings.Contains(kust, `newTag: "1.0.0"`) && !strings.Contains(kust, "newTag: 1.0.0") || !strings.Contains(kust, old) {
			t.Errorf("overlays/staging/kustomization.yaml is not back at 1.0.0@%s:\n%s", old, kust)
		}
		env = p.dotenv(t, "deliver-rollback")
		wantEnv(t, "deliver-rollback", env, map[string]string{
			"DELIVER_CHANGED": "true", "DELIVER_COMMIT_SHA": repo.Head(t), "DELIVER_IMAGE_DIGEST": old, "DELIVER_ROLLOUT": "ready",
		})
		checkDotenvSecrets(t, "deliver-rollback", env, secrets)
		image, ready = runningImage(t, cluster, ns)
		if want := reg.Ref("acme/web", "1.0.0") + "@" + old; image != want || ready != "2/2" {
			t.Errorf("after deliver-rollback: %s runs %s with %s ready, want %s with 2/2", ns, image, ready, want)
		}
		// 3. deliver-production, played by a person (GitLab sets CI_JOB_MANUAL): production's
		// policy (automated: false) accepts it as a manual run, in a push pipeline.
		// Without CI_JOB_MANUAL (a push pipeline's automation), the policy refuses, and the
		// dotenv report is still written (artifacts: when: always).
		prod := repo.Namespaces["production"]
		before := repo.Head(t)
		log, out, err := runJobErr("deliver-production", "--manual", "deliver-production")
		if err == nil {
			t.Errorf("deliver-production ran as automation in a push pipeline; production is automated: false\n%s", out)
		}
		if !strings.Contains(log, "refused by policy") {
			t.Errorf("deliver-production as automation: want a refusal by policy\n%s", log)
		}
		if repo.Head(t) != before {
			t.Error("deliver-production as automation changed the config repo")
		}
		wantEnv(t, "deliver-production (refused)", p.dotenv(t, "deliver-production"), map[string]string{"DELIVER_CHANGED": "false"})
		runJob("deliver-production", "--manual", "deliver-production", "CI_JOB_MANUAL=true")
		image, ready = runningImage(t, cluster, prod)
		if want := reg.Ref("acme/web", p.sha) + "@" + build; image != want || ready != "3/3" {
			t.Errorf("after deliver-production: %s runs %s with %s ready, want %s with 3/3", prod, image, ready, want)
		}
		wantEnv(t, "deliver-production", p.dotenv(t, "deliver-production"), map[string]string{
			"DELIVER_CHANGED": "true", "DELIVER_URL": "https://www.example.com", "DELIVER_ROLLOUT": "ready",
		})

		// The rollback commit says who and why, and links the pipeline.
		last, err := git.Log("acme/config", "main")
		if err != nil {
			t.Fatal(err)
		}
		if msg := last[0].Message; !strings.Contains(msg, "1.0.0") {
			t.Errorf("rollback commit message does not name the tag:\n%s", msg)
		}
	})
}

func wantEnv(t *testing.T, job string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: dotenv %s=%q, want %q", job, k, got[k], v)
		}
	}
}

func checkDotenvSecrets(t *testing.T, job string, env, secrets map[string]string) {
	t.Helper()
	for k, v := range env {
		for what, s := range secrets {
			if strings.Contains(v, s) {
				t.Errorf("%s: the secret %s shows in dotenv %s", job, what, k)
			}
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestGitLabComponent expands examples/gitlab-component/.gitlab-ci.yml, which includes
// templates/deliver.yml three times as a CI/CD component, and pipelines that include it for
// every command and for two services of one environment, with gitlab-ci-local --preview (which
// validates against GitLab's JSON schema). The component resolves locally: gitlab-ci-local
// takes a component from the working tree when its project path is the origin remote's and its
// ref is HEAD's SHA, so the example's release ref is replaced by $CI_COMMIT_SHA, as GitLab's
// own component self-tests do.
func TestGitLabComponent(t *testing.T) {
	t.Parallel()
	p := newGitLabProject(t, "https://gitlab.example.com/deliverhq/deliver.git", map[string]string{
		"templates/deliver.yml": "templates/deliver.yml",
	})
	example, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "gitlab-component", ".gitlab-ci.yml"))
	if err != nil {
		t.Fatal(err)
	}
	ref := regexp.MustCompile(`(component: \$CI_SERVER_FQDN/deliverhq/deliver/deliver)@\S+`)
	if n := len(ref.FindAll(example, -1)); n != 3 {
		t.Fatalf("examples/gitlab-component/.gitlab-ci.yml includes the component %d times, want 3", n)
	}
	local := ref.ReplaceAll(example, []byte("${1}@$$CI_COMMIT_SHA"))
	if err := os.WriteFile(filepath.Join(p.dir, ".gitlab-ci.yml"), local, 0o644); err != nil {
		t.Fatal(err)
	}

	preview := p.preview

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		jobs := preview(t)
		var names []string
		for n := range jobs {
			names = append(names, n)
		}
		sort.Strings(names)
		want := []string{"build", "deliver-deploy-production-web", "deliver-deploy-staging-web", "deliver-rollback-production-web"}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Fatalf("jobs %v, want %v", names, want)
		}
		staging := jobs["deliver-deploy-staging-web"]
		vars := staging["variables"].(map[string]any)
		for k, v := range map[string]string{
			"DELIVER_ENV": "staging", "DELIVER_WAIT": "true", "DELIVER_NO_APPLY": "false", "DELIVER_BRANCH": "main",
			"DELIVER_PATH_TEMPLATE": "overlays/{env}", "DELIVER_TIMEOUT": "5m", "DELIVER_PUSH_ATTEMPTS": "20",
			"DELIVER_IMAGE": "web=$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA",
		} {
			if vars[k] != v {
				t.Errorf("deliver-deploy-staging-web: %s=%v, want %q", k, vars[k], v)
			}
		}
		envName := staging["environment"].(map[string]any)
		if envName["name"] != "staging" || envName["url"] != "$DELIVER_URL" || envName["deployment_tier"] != "staging" {
			t.Errorf("deliver-deploy-staging-web: environment %v", envName)
		}
		if staging["resource_group"] != "deliver-staging" {
			t.Errorf("deliver-deploy-staging-web: resource_group %v", staging["resource_group"])
		}
		img := staging["image"].(map[string]any)
		if ep, _ := img["entrypoint"].([]any); len(ep) != 1 || ep[0] != "" {
			t.Errorf("deliver-deploy-staging-web: image entrypoint %v, want [\"\"]", img["entrypoint"])
		}
		prodRules, _ := json.Marshal(jobs["deliver-deploy-production-web"]["rules"])
		if !strings.Contains(string(prodRules), `"when":"manual"`) {
			t.Errorf("deliver-deploy-production-web: rules %s have no when: manual", prodRules)
		}
		rb := jobs["deliver-rollback-production-web"]
		if s, _ := json.Marshal(rb["script"]); !strings.Contains(string(s), "deliver rollback") {
			t.Errorf("deliver-rollback-production-web: script %s", s)
		}
	})

	// A rollback pipeline: the project's own pipeline inputs reach the component's.
	t.Run("rollback_inputs", func(t *testing.T) {
		t.Parallel()
		jobs := preview(t, "--input", "rollback_tag=1.0.0", "--input", "rollback_environment=staging")
		rb, ok := jobs["deliver-rollback-staging-web"]
		if !ok {
			t.Fatalf("no deliver-rollback-staging-web job with rollback_environment=staging")
		}
		vars := rb["variables"].(map[string]any)
		// The tag is expanded when the job runs, from ROLLBACK_TAG: the input's value, or a
		// pipeline variable's where pipeline variables are allowed.
		if vars["DELIVER_TAG"] != "$ROLLBACK_TAG" || vars["DELIVER_ENV"] != "staging" || vars["DELIVER_IMAGE"] != "web" {
			t.Errorf("deliver-rollback-staging-web: variables %v", vars)
		}
		web := p.jobs(t, "CI_PIPELINE_SOURCE=web", "--input", "rollback_tag=1.0.0")
		if want := map[string]string{"deliver-rollback-production-web": "on_success"}; !equalMaps(web, want) {
			t.Errorf("web pipeline with the input rollback_tag: jobs %v, want %v", web, want)
		}
		web = p.jobs(t, "CI_PIPELINE_SOURCE=web", "ROLLBACK_TAG=1.0.0")
		if want := map[string]string{"deliver-rollback-production-web": "on_success"}; !equalMaps(web, want) {
			t.Errorf("web pipeline with the variable ROLLBACK_TAG: jobs %v, want %v", web, want)
		}
		off := p.jobs(t, "DELIVER_STAGING_DISABLED=true")
		if want := map[string]string{"build": "on_success", "deliver-deploy-production-web": "manual"}; !equalMaps(off, want) {
			t.Errorf("push pipeline with DELIVER_STAGING_DISABLED: jobs %v, want %v", off, want)
		}
	})

	// What each command's job is to the GitLab environment: deploy, rollback, promote and apply
	// are deployments (action start, GitLab's default); diff only verifies the environment and
	// lock and unlock only access it, so none of them is recorded as a deployment.
	t.Run("environment_action", func(t *testing.T) {
		t.Parallel()
		want := map[string]string{"deploy": "start", "rollback": "start", "promote": "start", "apply": "start", "diff": "verify", "lock": "access", "unlock": "access"}
		var ci strings.Builder
		ci.WriteString("include:\n")
		for _, cmd := range []string{"deploy", "rollback", "promote", "apply", "diff", "lock", "unlock"} {
			fmt.Fprintf(&ci, "  - component: $CI_SERVER_FQDN/deliverhq/deliver/deliver@$CI_COMMIT_SHA\n    inputs: {command: %s, name: web, environment: staging, config_repo: https://gitlab.example.com/acme/config.git, images: web}\n", cmd)
		}
		q := componentProject(t, ci.String())
		jobs := q.preview(t)
		for cmd, action := range want {
			job := "deliver-" + cmd + "-staging-web"
			env, _ := jobs[job]["environment"].(map[string]any)
			got, _ := env["action"].(string)
			if got == "" {
				got = "start" // GitLab's default
			}
			if got != action || env["name"] != "staging" {
				t.Errorf("%s: environment %v, want name staging and action %s", job, env, action)
			}
		}
	})

	// Two services deployed to one environment by two includes: two jobs, each with its own
	// images. Jobs of the same name would be merged by GitLab without a word, dropping one
	// service, so the name input is required.
	t.Run("two_services_one_environment", func(t *testing.T) {
		t.Parallel()
		include := func(name, images string) string {
			in := "  - component: $CI_SERVER_FQDN/deliverhq/deliver/deliver@$CI_COMMIT_SHA\n    inputs:\n"
			if name != "" {
				in += "      name: " + name + "\n"
			}
			return in + "      environment: staging\n      config_repo: https://gitlab.example.com/acme/config.git\n      images: " + images + "\n"
		}
		q := componentProject(t, "include:\n"+include("web", "web=registry.example.com/web:1")+include("api", "api=registry.example.com/api:1"))
		jobs := q.preview(t)
		for job, image := range map[string]string{"deliver-deploy-staging-web": "web=registry.example.com/web:1", "deliver-deploy-staging-api": "api=registry.example.com/api:1"} {
			vars, _ := jobs[job]["variables"].(map[string]any)
			if vars["DELIVER_IMAGE"] != image {
				t.Errorf("%s: DELIVER_IMAGE=%v, want %s (jobs %v)", job, vars["DELIVER_IMAGE"], image, mapKeys(jobs))
			}
		}
		r := componentProject(t, "include:\n"+include("", "web=registry.example.com/web:1")+include("", "api=registry.example.com/api:1"))
		if out, err := r.gcl(t, "--preview"); err == nil || !strings.Contains(out, "name") {
			t.Errorf("two includes without a name were accepted (GitLab would merge them into one job):\n%s", out)
		}
	})

	// A bad input is refused: command has options.
	t.Run("bad_input", func(t *testing.T) {
		t.Parallel()
		bad := strings.Replace(string(local), "command: rollback", "command: destroy", 1)
		q := newGitLabProject(t, "https://gitlab.example.com/deliverhq/deliver.git", map[string]string{
			"templates/deliver.yml": "templates/deliver.yml",
		})
		if err := os.WriteFile(filepath.Join(q.dir, ".gitlab-ci.yml"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := q.gcl(t, "--preview"); err == nil {
			t.Errorf("gitlab-ci-local accepted command: destroy:\n%s", out)
		}
	})
}

// componentProject is a project of the component's own repository (so the component at
// $CI_COMMIT_SHA resolves locally) with the given .gitlab-ci.yml.
func componentProject(t *testing.T, ci string) *gitlabProject {
	t.Helper()
	p := newGitLabProject(t, "https://gitlab.example.com/deliverhq/deliver.git", map[string]string{
		"templates/deliver.yml": "templates/deliver.yml",
	})
	if err := os.WriteFile(filepath.Join(p.dir, ".gitlab-ci.yml"), []byte(ci), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// preview expands the project's pipeline with gitlab-ci-local --preview, which validates it
// against GitLab's JSON schema, and returns its jobs.
func (p *gitlabProject) preview(t *testing.T, args ...string) map[string]map[string]any {
	t.Helper()
	out, err := p.gcl(t, append([]string{"--preview"}, args...)...)
	if err != nil {
		t.Fatalf("gitlab-ci-local --preview %v: %v\n%s", args, err, out)
	}
	if !strings.Contains(out, "json schema validated") {
		t.Fatalf("gitlab-ci-local did not validate against GitLab's schema:\n%s", out)
	}
	return parseJobs(t, out[strings.Index(out, "\n---\n")+5:])
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// parseJobs parses gitlab-ci-local's expanded YAML into its jobs (top-level mappings other
// than stages, variables and the like, and other than hidden jobs).
func parseJobs(t *testing.T, doc string) map[string]map[string]any {
	t.Helper()
	var top map[string]any
	if err := yaml.Unmarshal([]byte(doc), &top); err != nil {
		t.Fatalf("parsing the expanded pipeline: %v\n%s", err, doc)
	}
	jobs := map[string]map[string]any{}
	for k, v := range top {
		m, ok := v.(map[string]any)
		if !ok || k == "variables" || k == "default" || k == "workflow" || strings.HasPrefix(k, ".") {
			continue
		}
		jobs[k] = m
	}
	return jobs
}

// kubeconfigKey returns the client-key-data of a kubeconfig: the secret part of a
// certificate-based kubeconfig.
func kubeconfigKey(t testing.TB, kubeconfig []byte) string {
	t.Helper()
	m := regexp.MustCompile(`client-key-data: (\S+)`).FindSubmatch(kubeconfig)
	if m == nil {
		t.Fatal("the kubeconfig has no client-key-data")
	}
	return string(m[1])
}

// TestGitLabCatalogRelease expands deliver's own .gitlab-ci.yml, the pipeline of the GitLab
// project that publishes the component to the CI/CD catalog: branch pipelines run the
// component's self-test (this commit's component and deliver, a dry run) and no release; the
// catalog tag X.Y.Z of a release runs the catalog release, the tag vX.Y.Z does not. The release
// job refuses a tag whose component is not pinned to the release's image and passes on a
// release commit's files, pinned by hack/release as `make release` pins them.
func TestGitLabCatalogRelease(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		".gitlab-ci.yml":          ".gitlab-ci.yml",
		"templates/deliver.yml":   "templates/deliver.yml",
		".gitlab-ci-template.yml": ".gitlab-ci-template.yml",
		"action.yml":              "action.yml",
	}
	p := newGitLabProject(t, "https://gitlab.example.com/deliverhq/deliver.git", files)
	t.Run("jobs", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			vars []string
			want map[string]string
		}{
			{nil, map[string]string{"component-test-deploy-staging-web": "on_success"}},
			{[]string{"CI_COMMIT_BRANCH=", "CI_COMMIT_TAG=1.2.3"}, map[string]string{"catalog-release": "on_success"}},
			{[]string{"CI_COMMIT_BRANCH=", "CI_COMMIT_TAG=2.0.0-rc.1"}, map[string]string{"catalog-release": "on_success"}},
			{[]string{"CI_COMMIT_BRANCH=", "CI_COMMIT_TAG=v1.2.3"}, map[string]string{}},
		} {
			if got := p.jobs(t, tc.vars...); !equalMaps(got, tc.want) {
				t.Errorf("%v: jobs %v, want %v", tc.vars, got, tc.want)
			}
		}
		jobs := p.preview(t)
		job := jobs["component-test-deploy-staging-web"]
		vars, _ := job["variables"].(map[string]any)
		env, _ := job["environment"].(map[string]any)
		if job["stage"] != "test" || vars["DELIVER_DRY_RUN"] != "true" || vars["DELIVER_NO_APPLY"] != "true" ||
			vars["DELIVER_GIT_TOKEN"] != "$CI_JOB_TOKEN" || env["action"] != "verify" {
			t.Errorf("the component's self-test job: stage %v, variables %v, environment %v", job["stage"], vars, env)
		}
		if s, _ := json.Marshal(job["before_script"]); !strings.Contains(string(s), "go build") {
			t.Errorf("the component's self-test does not build this commit's deliver: before_script %s", s)
		}
	})

	t.Run("release_job", func(t *testing.T) {
		t.Parallel()
		q := newGitLabProject(t, "https://gitlab.example.com/deliverhq/deliver.git", files)
		release := func() (string, error) {
			return q.gcl(t, "catalog-release", "--force-shell-executor", "--no-shell-isolation",
				"--variable", "CI_COMMIT_BRANCH=", "--variable", "CI_COMMIT_TAG=1.2.3")
		}
		if out, err := release(); err == nil || !strings.Contains(out, "does not run ghcr.io/deliverhq/deliver:v1.2.3 by digest") {
			t.Errorf("the catalog release of an unpinned component: %v, want a refusal\n%s", err, out)
		}
		digest := "sha256:" + strings.Repeat("ab", 32)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if out, err := run(ctx, repoRoot(t), os.Environ(), "go", "run", "./hack/release", "pin", "--root", q.dir, "--version", "v1.2.3", "--digest", digest); err != nil {
			t.Fatalf("hack/release pin: %v\n%s", err, out)
		}
		if out, err := release(); err != nil {
			t.Errorf("the catalog release of a release commit's component: %v\n%s", err, out)
		}
	})
}

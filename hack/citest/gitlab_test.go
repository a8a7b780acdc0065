package citest

import (
	"context"
	"encoding/json"
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

// jobs lists the jobs gitlab-ci-local would run for the given variables, with their when.
func (p *gitlabProject) jobs(t *testing.T, vars ...string) map[string]string {
	t.Helper()
	args := []string{"--list-json"}
	for _, v := range vars {
		args = append(args, "--variable", v)
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
// templates/deliver.yml three times as a CI/CD component, with gitlab-ci-local --preview (which
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

	preview := func(t *testing.T, args ...string) map[string]map[string]any {
		t.Helper()
		out, err := p.gcl(t, append([]string{"--preview"}, args...)...)
		if err != nil {
			t.Fatalf("gitlab-ci-local --preview %v: %v\n%s", args, err, out)
		}
		if !strings.Contains(out, "json schema validated") {
			t.Fatalf("gitlab-ci-local did not validate against GitLab's schema:\n%s", out)
		}
		doc := out[strings.Index(out, "\n---\n")+5:]
		return parseJobs(t, doc)
	}

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		jobs := preview(t)
		var names []string
		for n := range jobs {
			names = append(names, n)
		}
		sort.Strings(names)
		want := []string{"build", "deliver-deploy-production", "deliver-deploy-staging", "deliver-rollback-production"}
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Fatalf("jobs %v, want %v", names, want)
		}
		staging := jobs["deliver-deploy-staging"]
		vars := staging["variables"].(map[string]any)
		for k, v := range map[string]string{
			"DELIVER_ENV": "staging", "DELIVER_WAIT": "true", "DELIVER_NO_APPLY": "false", "DELIVER_BRANCH": "main",
			"DELIVER_PATH_TEMPLATE": "overlays/{env}", "DELIVER_TIMEOUT": "5m", "DELIVER_PUSH_ATTEMPTS": "20",
			"DELIVER_IMAGE": "web=$CI_REGISTRY_IMAGE:$CI_COMMIT_SHA",
		} {
			if vars[k] != v {
				t.Errorf("deliver-deploy-staging: %s=%v, want %q", k, vars[k], v)
			}
		}
		envName := staging["environment"].(map[string]any)
		if envName["name"] != "staging" || envName["url"] != "$DELIVER_URL" || envName["deployment_tier"] != "staging" {
			t.Errorf("deliver-deploy-staging: environment %v", envName)
		}
		if staging["resource_group"] != "deliver-staging" {
			t.Errorf("deliver-deploy-staging: resource_group %v", staging["resource_group"])
		}
		img := staging["image"].(map[string]any)
		if ep, _ := img["entrypoint"].([]any); len(ep) != 1 || ep[0] != "" {
			t.Errorf("deliver-deploy-staging: image entrypoint %v, want [\"\"]", img["entrypoint"])
		}
		prodRules, _ := json.Marshal(jobs["deliver-deploy-production"]["rules"])
		if !strings.Contains(string(prodRules), `"when":"manual"`) {
			t.Errorf("deliver-deploy-production: rules %s have no when: manual", prodRules)
		}
		rb := jobs["deliver-rollback-production"]
		if s, _ := json.Marshal(rb["script"]); !strings.Contains(string(s), "deliver rollback") {
			t.Errorf("deliver-rollback-production: script %s", s)
		}
	})

	// A rollback pipeline: the project's own pipeline inputs reach the component's.
	t.Run("rollback_inputs", func(t *testing.T) {
		t.Parallel()
		jobs := preview(t, "--input", "rollback_tag=1.0.0", "--input", "rollback_environment=staging")
		rb, ok := jobs["deliver-rollback-staging"]
		if !ok {
			t.Fatalf("no deliver-rollback-staging job with rollback_environment=staging")
		}
		vars := rb["variables"].(map[string]any)
		if vars["DELIVER_TAG"] != "1.0.0" || vars["DELIVER_ENV"] != "staging" || vars["DELIVER_IMAGE"] != "web" {
			t.Errorf("deliver-rollback-staging: variables %v", vars)
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

// parseJobs parses gitlab-ci-local's expanded YAML into its jobs (top-level mappings other
// than stages, variables and the like).
func parseJobs(t *testing.T, doc string) map[string]map[string]any {
	t.Helper()
	var top map[string]any
	if err := yaml.Unmarshal([]byte(doc), &top); err != nil {
		t.Fatalf("parsing the expanded pipeline: %v\n%s", err, doc)
	}
	jobs := map[string]map[string]any{}
	for k, v := range top {
		m, ok := v.(map[string]any)
		if !ok || k == "variables" || k == "default" || k == "workflow" {
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

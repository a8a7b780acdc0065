package step_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
	"github.com/deliverhq/deliver/step/release"
)

// writeDockerConfig writes a docker config.json with user:password for host into dir.
func writeDockerConfig(t *testing.T, dir, host, user, password string) {
	t.Helper()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	fixture.WriteFiles(t, dir, map[string]string{"config.json": fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, auth)})
}

// TestRunsIsolated runs deliver in-process many times at once, each run with its own
// environment, given only through variables: its config repo and flags (DELIVER_*), its CI
// (GitLab or GitHub) and its registry credentials (a docker config in DOCKER_CONFIG). Each run
// must see its own settings only: the runs with credentials land in their own repo, recorded
// as their CI says, and the runs without are refused by the registry (exit 4).
func TestRunsIsolated(t *testing.T) {
	t.Parallel()
	type setup struct {
		s     *fixture.Servers
		ci    []string
		event string
	}
	setups := []setup{
		{ci: []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=push", "GITLAB_USER_NAME=GitLab"}, event: "push"},
		{ci: []string{"GITHUB_ACTIONS=true", "GITHUB_EVENT_NAME=workflow_dispatch", "GITHUB_ACTOR=octocat"}, event: "workflow_dispatch"},
	}
	for i := range setups {
		user, password := fmt.Sprintf("ci-%d", i), fmt.Sprintf("registry-s3cret-%d", i)
		setups[i].s = fixture.NewServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages},
			fixture.Options{RegOpts: []testenv.RegistryOption{testenv.WithBasicAuth(user, password)}})
		setups[i].s.PushImage(t, "team/web", "1.0.0")
	}
	type runSpec struct {
		setup int
		creds bool
	}
	var specs []runSpec
	for round := 0; round < 3; round++ {
		for i := range setups {
			specs = append(specs, runSpec{i, true}, runSpec{i, false})
		}
	}
	results := make([]result, len(specs))
	var wg sync.WaitGroup
	for n, sp := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			su := setups[sp.setup]
			home := t.TempDir()
			if sp.creds {
				writeDockerConfig(t, home, su.s.Reg.Host, fmt.Sprintf("ci-%d", sp.setup), fmt.Sprintf("registry-s3cret-%d", sp.setup))
			}
			env := append([]string{
				"DELIVER_CONFIG_REPO=" + su.s.URL, "DELIVER_GIT_USERNAME=" + su.s.Git.Username, "DELIVER_GIT_TOKEN=" + su.s.Git.Password,
				"DELIVER_ENV=staging", "DELIVER_IMAGE=web=" + su.s.Reg.Ref("team/web", "1.0.0"), "DELIVER_NO_APPLY=true",
				"GITHUB_OUTPUT=github-output", "GITHUB_STEP_SUMMARY=github-summary",
			}, su.ci...)
			results[n] = runIn(t, home, env, "deploy")
			if sp.creds && sp.setup == 0 {
				if _, err := os.Stat(filepath.Join(home, "deliver.env")); err != nil {
					t.Errorf("run %d: GitLab's dotenv report is not in its working directory: %v", n, err)
				}
			}
			if sp.creds && sp.setup == 1 {
				if _, err := os.Stat(filepath.Join(home, "github-output")); err != nil {
					t.Errorf("run %d: GitHub's outputs are not in its working directory: %v", n, err)
				}
			}
		}()
	}
	wg.Wait()
	for n, sp := range specs {
		r, host := results[n], setups[sp.setup].s.Reg.Host
		switch {
		case sp.creds && (r.code != 0 || !strings.Contains(r.stdout, "web="+host+"/team/web:1.0.0@sha256:")):
			t.Errorf("run %d (setup %d, with credentials):\n%s", n, sp.setup, r)
		case !sp.creds && (r.code != step.ExitAuth || !strings.Contains(r.stderr, host)):
			t.Errorf("run %d (setup %d, without credentials): want exit %d naming %s\n%s", n, sp.setup, step.ExitAuth, host, r)
		}
	}
	for i, su := range setups {
		log, err := su.s.Git.Log(su.s.Name, "main")
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != 2 {
			t.Errorf("setup %d: %d commits, want the seed and one deploy", i, len(log))
			continue
		}
		rec, err := release.Parse(log[0].Message)
		if err != nil || rec.Event != su.event || !strings.Contains(rec.Images[0].To, su.s.Reg.Host) {
			t.Errorf("setup %d: the deploy is recorded as %+v (%v), want event %s and its own registry", i, rec, err, su.event)
		}
	}
}

// TestProcessEnvironmentIgnored: a run reads none of the test process's own environment, even
// where the process's would make it succeed: its flags' variables, its CI's, the docker config,
// HOME and KUBECONFIG. It sets the process's environment, so it does not run in parallel.
func TestProcessEnvironmentIgnored(t *testing.T) {
	s := fixture.NewServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages},
		fixture.Options{RegOpts: []testenv.RegistryOption{testenv.WithBasicAuth("ci", "registry-s3cret")}})
	s.PushImage(t, "team/web", "1.0.0")
	processHome := t.TempDir()
	writeDockerConfig(t, processHome, s.Reg.Host, "ci", "registry-s3cret")
	fixture.WriteFiles(t, processHome, map[string]string{".kube/config": fakeKubeconfig})
	for k, v := range map[string]string{
		"DELIVER_CONFIG_REPO": s.URL, "DELIVER_GIT_USERNAME": s.Git.Username, "DELIVER_GIT_TOKEN": s.Git.Password,
		"DELIVER_ENV": "staging", "DELIVER_NO_APPLY": "true", "GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push",
		"DOCKER_CONFIG": processHome, "HOME": processHome, "KUBECONFIG": filepath.Join(processHome, ".kube/config"),
	} {
		t.Setenv(k, v)
	}

	// Without the process's DELIVER_* variables, the run has no environment to deploy to.
	want{code: step.ExitUsage, stderr: errLine("--env: no environment given")}.check(t, run(t, nil, "deploy"))
	// Without the process's docker config, the registry refuses the run; without its
	// GITLAB_CI, the run reports as plain text (no GitLab sections).
	r := run(t, nil, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0")}, s.GitArgs())...)
	want{code: step.ExitAuth, stderr: errLine("registry refused the credentials")}.check(t, r)
	if strings.Contains(r.stderr, "section_start") {
		t.Errorf("the run reported as GitLab CI, from the process's GITLAB_CI:\n%s", r)
	}
	// Without the process's HOME and KUBECONFIG, there is no kubeconfig.
	want{code: step.ExitUsage, stderr: errLine("finding a kubeconfig")}.check(t, run(t, nil, args([]string{"apply", "--env", "staging"}, s.GitArgs())...))
	if n := s.Commits(t); n != 1 {
		t.Errorf("%d commits: a run pushed", n)
	}
}

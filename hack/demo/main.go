// Command demo runs deliver's main job end to end on this machine, against real servers it
// starts and stops itself: a git smart-HTTP server holding a config repo made from
// examples/config-repo, an OCI registry with two builds of a demo image, a Kubernetes control
// plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, which runs the
// pods on a simulated node), and a Gitea forge. It deploys to staging and production, rolls
// production back by tag, then deploys to a protected production through pull requests, and
// tells the story. `make demo` builds what it needs and runs it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
)

func main() {
	deliver := flag.String("deliver", "bin/deliver", "the deliver binary to run")
	examples := flag.String("examples", "examples/config-repo", "config repo to seed the git server with")
	verbose := flag.Bool("v", false, "show deliver's full logs")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *deliver, *examples, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

type demo struct {
	deliver string
	git     *testenv.GitServer
	reg     *testenv.Registry
	cluster *testenv.Cluster
	repoURL string
	verbose bool
	story   []string
}

func (d *demo) say(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Println(line)
	d.story = append(d.story, line)
}

func run(ctx context.Context, deliver, examples string, verbose bool) error {
	start := time.Now()
	if _, err := os.Stat(deliver); err != nil {
		return fmt.Errorf("%s not found: run `make build` first (or `make demo`)", deliver)
	}
	deliver, _ = filepath.Abs(deliver)
	d := &demo{deliver: deliver, verbose: verbose}

	fmt.Println("starting a git server, a registry and a Kubernetes control plane on 127.0.0.1 ...")
	var err error
	if d.git, err = testenv.StartGitServer(); err != nil {
		return err
	}
	defer d.git.Close()
	if d.reg, err = testenv.StartRegistry(); err != nil {
		return err
	}
	defer d.reg.Close()
	t0 := time.Now()
	if d.cluster, err = testenv.StartCluster(ctx); err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer d.cluster.Stop()
	fmt.Printf("  git %s, registry %s, control plane ready in %s\n\n", d.git.URL, d.reg.Host, time.Since(t0).Round(100*time.Millisecond))

	seed, err := seedFrom(examples, d.reg.Host)
	if err != nil {
		return err
	}
	defer os.RemoveAll(seed)
	if d.repoURL, err = d.git.CreateRepo("config", "main", seed); err != nil {
		return err
	}
	d.say("1. The config repo %s holds base/ and overlays/{staging,production} (from %s).", d.repoURL, examples)

	// Two builds of the app, one day apart.
	v1, err := testenv.RandomImage(time.Now().Add(-24 * time.Hour))
	if err != nil {
		return err
	}
	v2, err := testenv.RandomImage(time.Now())
	if err != nil {
		return err
	}
	d1, err := d.reg.PushImage("team/web", v1, "1.0.0")
	if err != nil {
		return err
	}
	d2, err := d.reg.PushImage("team/web", v2, "1.1.0")
	if err != nil {
		return err
	}
	push, manual := []string{"CI_PIPELINE_SOURCE=push"}, []string{"CI_PIPELINE_SOURCE=web"}
	d.say("2. CI built team/web 1.0.0 (%s) and 1.1.0 (%s) and pushed them to %s.", d1[:19], d2[:19], d.reg.Host)

	steps := []struct {
		title    string
		env      []string
		wantCode int
		args     []string
		show     string // namespace whose running image to show afterwards
	}{
		{"3. The pipeline for 1.0.0 deploys to staging (automated: a push pipeline)", push, 0,
			[]string{"deploy", "--env", "staging", "--image", "web=" + d.reg.Ref("team/web", "1.0.0")}, ""},
		{"4. A release manager deploys 1.0.0 to production (a manual pipeline)", manual, 0,
			[]string{"deploy", "--env", "production", "--image", "web=" + d.reg.Ref("team/web", "1.0.0")}, ""},
		{"5. The pipeline for 1.1.0 deploys to staging", push, 0,
			[]string{"deploy", "--env", "staging", "--image", "web=" + d.reg.Ref("team/web", "1.1.0")}, ""},
		{"6. 1.1.0 goes to production", manual, 0,
			[]string{"deploy", "--env", "production", "--image", "web=" + d.reg.Ref("team/web", "1.1.0")}, "web-production"},
		{"7. 1.1.0 misbehaves: roll production back to 1.0.0 by tag; nothing is rebuilt", manual, 0,
			[]string{"rollback", "--env", "production", "--image", "web", "--tag", "1.0.0"}, "web-production"},
		{"8. During the incident, staging is locked so automation cannot move it", manual, 0,
			[]string{"lock", "--env", "staging", "--image", "web", "--reason", "incident 42: keep 1.1.0 for debugging"}, ""},
		{"9. A push pipeline tries to deploy 1.0.0 to staging: the lock refuses it (exit 8)", push, 8,
			[]string{"deploy", "--env", "staging", "--image", "web=" + d.reg.Ref("team/web", "1.0.0")}, ""},
		{"10. The incident is over: unlock staging", manual, 0,
			[]string{"unlock", "--env", "staging", "--image", "web"}, ""},
		{"11. Roll staging back without naming a tag: deliver finds the previous release in the config repo's history", manual, 0,
			[]string{"rollback", "--env", "staging", "--image", "web"}, "web-staging"},
	}
	for _, st := range steps {
		if err := d.deliverCmd(ctx, st.title, st.env, st.wantCode, st.args...); err != nil {
			return err
		}
		if st.show != "" {
			if err := d.running(ctx, st.show); err != nil {
				return err
			}
		}
	}
	if err := d.history(); err != nil {
		return err
	}
	if err := d.protected(ctx, seed); err != nil {
		return err
	}
	fmt.Printf("\ndemo finished in %s; stopping the servers.\n", time.Since(start).Round(100*time.Millisecond))
	return nil
}

// protected tells the pull-request story: the same config repo on a forge (a real Gitea), where
// production's branch is protected and deliver.yaml says via: pull-request. A deploy opens a
// pull request, a reviewer merges it, and the config repo's own job applies it; then a deploy
// with --auto-merge --wait-merged lands, applies and waits by itself.
func (d *demo) protected(ctx context.Context, seed string) error {
	fmt.Println()
	fmt.Println("starting a Gitea forge on 127.0.0.1 (built by `make gitea-bins`) ...")
	g, err := testenv.StartGitea(ctx)
	if err != nil {
		return err
	}
	defer g.Stop()
	policy := filepath.Join(seed, "deliver.yaml")
	b, err := os.ReadFile(policy)
	if err != nil {
		return err
	}
	b = bytes.Replace(b, []byte("    automated: false\n"), []byte("    automated: false\n    # Nobody pushes to main: changes arrive as reviewed pull requests.\n    via: pull-request\n"), 1)
	if err := os.WriteFile(policy, b, 0o644); err != nil {
		return err
	}
	url, err := g.CreateRepo(ctx, "config", seed)
	if err != nil {
		return err
	}
	if err := g.ProtectBranch(ctx, "config", testenv.BranchProtection{Branch: "main"}); err != nil {
		return err
	}
	d.say("13. The config repo now lives on a forge, %s: main is protected (no direct pushes) and production has via: pull-request.", url)
	forgeArgs := []string{"--config-repo", url, "--git-username", testenv.GiteaAdmin, "--git-token", g.Token}
	manual := []string{"CI_PIPELINE_SOURCE=web"}
	if err := d.run(ctx, "14. 1.1.0 goes to production again: deliver opens a pull request instead of pushing", manual, 0, forgeArgs,
		"deploy", "--env", "production", "--forge", "gitea", "--image", "web="+d.reg.Ref("team/web", "1.1.0")); err != nil {
		return err
	}
	pulls, err := g.Pulls(ctx, "config", "open")
	if err != nil || len(pulls) != 1 {
		return fmt.Errorf("open pull requests: %d, %v; want 1", len(pulls), err)
	}
	d.say("   pull request #%d %q, for a reviewer: the images from -> to, the checks that passed, the overlay diff", pulls[0].Number, pulls[0].Title)
	if err := mergePull(ctx, g, pulls[0].Number); err != nil {
		return err
	}
	d.say("15. A reviewer merges it. The config repo's own job (examples/github/config-repo-workflow.yml) applies main:")
	if err := d.run(ctx, "    deliver apply", manual, 0, forgeArgs, "apply", "--env", "production"); err != nil {
		return err
	}
	if err := d.running(ctx, "web-production"); err != nil {
		return err
	}
	if err := d.run(ctx, "16. Back to 1.0.0 with --auto-merge --wait-merged: the forge merges it, deliver applies the merge and waits", manual, 0, forgeArgs,
		"rollback", "--env", "production", "--forge", "gitea", "--image", "web", "--tag", "1.0.0",
		"--auto-merge", "--wait-merged", "--merge-timeout", "2m", "--merge-poll-interval", "500ms"); err != nil {
		return err
	}
	return d.running(ctx, "web-production")
}

// mergePull merges pull request number of the demo's forge repo, as a reviewer would, waiting out
// Gitea's "Please try again later" while it checks the new head.
func mergePull(ctx context.Context, g *testenv.Gitea, number int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := g.Do(ctx, "POST", fmt.Sprintf("/repos/%s/config/pulls/%d/merge", testenv.GiteaAdmin, number), map[string]any{"Do": "merge"}, nil)
		if err == nil || !strings.Contains(err.Error(), "try again later") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// seedFrom copies the example config repo, pointing its images at the local registry (the
// examples name registry.example.com, which does not exist).
func seedFrom(examples, registryHost string) (string, error) {
	dir, err := os.MkdirTemp("", "deliver-demo-seed-")
	if err != nil {
		return "", err
	}
	err = filepath.WalkDir(examples, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(examples, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dir, rel)
		if e.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		data = bytes.ReplaceAll(data, []byte("registry.example.com"), []byte(registryHost))
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("copying %s: %w", examples, err)
	}
	return dir, nil
}

// deliverCmd runs deliver as a CI job would against the git server's config repo; see run.
func (d *demo) deliverCmd(ctx context.Context, title string, env []string, wantCode int, args ...string) error {
	return d.run(ctx, title, env, wantCode, []string{"--config-repo", d.repoURL, "--git-username", d.git.Username, "--git-token", d.git.Password}, args...)
}

// run runs deliver with args and repoArgs as a CI job would, shows its result line, and fails
// on an exit code other than wantCode.
func (d *demo) run(ctx context.Context, title string, env []string, wantCode int, repoArgs []string, args ...string) error {
	fmt.Println()
	d.say("%s:", title)
	full := append(append([]string{}, args...), repoArgs...)
	switch args[0] {
	case "deploy", "rollback", "apply":
		full = append(full, "--kubeconfig", d.cluster.Kubeconfig, "--timeout", "60s")
	}
	fmt.Printf("   $ deliver %s\n", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, d.deliver, full...)
	home, _ := os.MkdirTemp("", "deliver-demo-home-")
	defer os.RemoveAll(home)
	cmd.Dir = home
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GITLAB_CI=true",
		"CI_PROJECT_URL=https://gitlab.example.com/team/web", "CI_COMMIT_SHA=4f2a9c1", "GITLAB_USER_NAME=Demo User",
		"GITLAB_USER_EMAIL=demo@example.com", "CI_PIPELINE_URL=https://gitlab.example.com/team/web/-/pipelines/" + fmt.Sprint(100+len(d.story))}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(&stderr, logWriter(d.verbose))
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return err
	}
	if !d.verbose {
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			line = strings.TrimSpace(ansi.ReplaceAllString(line, ""))
			if strings.Contains(line, "section_") {
				continue
			}
			for _, key := range []string{" done in ", " -> ", " ready", "pushed ", "refused", "locked", "previous release", "error:", "pull request #", " merged as "} {
				if strings.Contains(line, key) {
					fmt.Println("   " + line)
					break
				}
			}
		}
	}
	if code != wantCode {
		return fmt.Errorf("deliver %s exited %d, want %d:\n%s", args[0], code, wantCode, stderr.String())
	}
	if code != 0 {
		d.say("   deliver exited %d, as it should: nothing was pushed or applied", code)
		return nil
	}
	d.say("   result: %s", strings.TrimSpace(stdout.String()))
	return nil
}

// ansi matches the colour and erase-line escapes GitLab's log sections use.
var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]|\r`)

func logWriter(verbose bool) io.Writer {
	if verbose {
		return os.Stdout
	}
	return io.Discard
}

// running shows the image the Deployment's pods run and how many are ready.
func (d *demo) running(ctx context.Context, ns string) error {
	out, err := d.cluster.Kubectl(ctx, "get", "deployment", "web", "-n", ns, "-o",
		`jsonpath={.spec.template.spec.containers[0].image} {.status.readyReplicas}/{.spec.replicas}`)
	if err != nil {
		return fmt.Errorf("reading the running image: %w\n%s", err, out)
	}
	parts := strings.Fields(string(out))
	if len(parts) != 2 {
		return fmt.Errorf("unexpected kubectl output %q", out)
	}
	d.say("   cluster: %s/web runs %s, %s pods ready", ns, parts[0], parts[1])
	return nil
}

// history prints the config repo's log: every change is a commit with machine-readable trailers.
func (d *demo) history() error {
	log, err := d.git.Log("config", "main")
	if err != nil {
		return err
	}
	fmt.Println()
	d.say("12. The config repo's history, newest first (each commit links the pipeline that made it):")
	for _, c := range log {
		subject := strings.SplitN(c.Message, "\n", 2)[0]
		d.say("   %s %s (%s)", c.Hash.String()[:10], subject, c.Author.Name)
	}
	return nil
}

package step_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
	"github.com/deliverhq/deliver/step/release"
)

// The tests in this file hand deliver's changes to the real Flux source-controller and
// kustomize-controller (internal/testenv), each test with controllers of its own that watch a
// namespace of their own, against the shared cluster.
//
// Flux's Kustomization runs health checks with spec.wait, polling every 5 s (hard-coded), and
// gives up after spec.timeout, which Flux raises to at least 30 s: a never-ready rollout then
// takes 30 s to be reported, and a rollout not complete at the first check costs 5 s. The tests
// set wait only where they exercise it (Flux's own health checks, and Flux's failures, which
// come at once either way) and otherwise let deliver wait for the rollout itself, bounded by
// --timeout.

// fluxConfig is a config repo and a registry with the real Flux controllers reconciling each
// environment's overlay through a Kustomization named after the environment, from the
// GitRepository "config".
type fluxConfig struct {
	*fixture.Servers
	cl   *testenv.Cluster
	flux *testenv.Flux
	// ns maps each environment to its overlay's namespace.
	ns map[string]string
}

type fluxOptions struct {
	services []string
	// envs are the environments; each gets an overlay, a namespace and a Kustomization.
	envs []string
	// wait sets spec.wait on the Kustomizations of these environments.
	wait map[string]bool
	// policy is the config repo's deliver.yaml; {flux} is the Flux namespace.
	policy string
	// edit changes the seed files.
	edit func(files map[string]string)
}

// newFluxConfig sets up a fluxConfig and waits until Flux applied the repo's first commit in
// every environment.
func newFluxConfig(t *testing.T, o fluxOptions) *fluxConfig {
	t.Helper()
	fluxNS := uniqueNS("flux")
	fc := &fluxConfig{cl: testenv.SharedCluster(t), ns: map[string]string{}}
	for _, e := range o.envs {
		fc.ns[e] = uniqueNS("flux-" + e)
	}
	fc.Servers = fixture.NewServers(t, fixture.App{Services: o.services, Envs: fc.ns, OverlayImages: fixture.StagingImages,
		Policy: strings.ReplaceAll(o.policy, "{flux}", fluxNS)}, fixture.Options{Edit: o.edit})
	fc.flux = startFlux(t, fc.cl, fluxNS, testenv.GitRepository{URL: fc.URL, Username: fc.Git.Username, Password: fc.Git.Password}, o)
	head := fc.Head(t)
	for _, e := range o.envs {
		fc.waitApplied(t, e, head)
	}
	return fc
}

// startFlux starts the Flux controllers watching namespace fluxNS, with the GitRepository
// "config" of src's repo (branch main) and a Kustomization per environment of o.
func startFlux(t *testing.T, cl *testenv.Cluster, fluxNS string, src testenv.GitRepository, o fluxOptions) *testenv.Flux {
	t.Helper()
	f := testenv.NewFlux(t, cl, testenv.FluxOptions{Namespace: fluxNS})
	ctx := context.Background()
	src.Name, src.Branch = "config", "main"
	if err := f.CreateGitRepository(ctx, src); err != nil {
		t.Fatal(err)
	}
	for _, e := range o.envs {
		if err := f.CreateKustomization(ctx, testenv.Kustomization{Name: e, Source: "config", Path: "./overlays/" + e, Prune: true, Wait: o.wait[e]}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// kustomization is the namespace/name of an environment's Kustomization.
func (fc *fluxConfig) kustomization(envName string) string { return fc.flux.Namespace + "/" + envName }

// status reads an environment's Kustomization: its last applied commit and its Ready
// condition's status and reason.
func (fc *fluxConfig) status(t *testing.T, envName string) (applied, ready, reason string) {
	t.Helper()
	u, err := fc.flux.Get(context.Background(), testenv.KustomizationGVR, envName)
	if err != nil {
		t.Fatal(err)
	}
	rev, _, _ := unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
	if i := strings.LastIndex(rev, ":"); i >= 0 {
		rev = rev[i+1:]
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			ready, _ = m["status"].(string)
			reason, _ = m["reason"].(string)
		}
	}
	return rev, ready, reason
}

// waitApplied waits (two minutes at most) until an environment's Kustomization applied commit
// and is Ready.
func (fc *fluxConfig) waitApplied(t *testing.T, envName, commit string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		applied, ready, reason := fc.status(t, envName)
		if applied == commit && ready == "True" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Kustomization %s: applied %q, Ready=%s %s; want %s applied and Ready", fc.kustomization(envName), applied, ready, reason, commit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (fc *fluxConfig) suspend(t *testing.T, gvrName string, on bool) {
	t.Helper()
	gvr, name := testenv.KustomizationGVR, gvrName
	if gvrName == "source" {
		gvr, name = testenv.GitRepositoryGVR, "config"
	}
	if err := fc.flux.Patch(context.Background(), gvr, name, fmt.Appendf(nil, `{"spec":{"suspend":%t}}`, on)); err != nil {
		t.Fatal(err)
	}
}

// managers lists the field managers of a Deployment.
func managers(t *testing.T, c *testenv.Cluster, ns, name string) string {
	t.Helper()
	return fixture.Kubectl(t, c, "get", "deployment", name, "-n", ns, "-o", "jsonpath={.metadata.managedFields[*].manager}")
}

// fluxPolicy hands staging to Flux in deliver.yaml.
const fluxPolicy = `environments:
  staging:
    apply: flux
    flux:
      kustomization: {flux}/staging
`

// TestFluxDeploy: with environments.staging.apply: flux, a deploy pushes, asks Flux and waits
// until Flux applied its commit and the rollout is ready; deliver itself applies nothing (no
// field of the Deployment is deliver's). diff says whether Flux applied the branch's tip
// (exit 0) or not (exit 1, listing the commits); apply asks Flux to apply the tip and waits. A
// suspended Kustomization, a missing one and --apply-via direct against the policy are refused
// before anything is pushed.
func TestFluxDeploy(t *testing.T) {
	t.Parallel()
	fc := newFluxConfig(t, fluxOptions{services: []string{"web"}, envs: []string{"staging"}, policy: fluxPolicy})
	d1 := fc.PushImage(t, "team/web", "1.0.0")
	d2 := fc.PushImage(t, "team/web", "2.0.0")
	ns := fc.ns["staging"]
	kube := []string{"--kubeconfig", fc.cl.Kubeconfig, "--timeout", "90s"}
	deploy := func(tag string, more ...string) result {
		return run(t, nil, args([]string{"deploy", "--env", "staging", "--image", "web=" + fc.Reg.Ref("team/web", tag)}, kube, fc.GitArgs(), more)...)
	}

	r := deploy("1.0.0")
	if r.code != 0 {
		t.Fatalf("deploy through Flux:\n%s", r)
	}
	commit := fc.Head(t)
	want := fc.Reg.Host + "/team/web:1.0.0@" + d1
	for _, s := range []string{
		"Flux Kustomization " + fc.kustomization("staging") + " applies environment staging",
		"asked Flux to fetch GitRepository/" + fc.flux.Namespace + "/config now",
		"Kustomization/" + fc.kustomization("staging") + ": applied " + commit[:12],
	} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "server-side") {
		t.Errorf("deliver dry-ran or applied the overlay itself:\n%s", r.stderr)
	}
	if !strings.Contains(r.stdout, "commit="+commit) || !strings.Contains(r.stdout, "rollout=ready") {
		t.Errorf("result line: %q", r.stdout)
	}
	if applied, ready, _ := fc.status(t, "staging"); applied != commit || ready != "True" {
		t.Errorf("the Kustomization applied %s (Ready=%s), want the deploy's commit %s", applied, ready, commit)
	}
	if img, ready := runningImage(t, fc.cl, ns, "web"); img != want || ready != "1/1" {
		t.Errorf("web runs %s (%s ready), want %s ready", img, ready, want)
	}
	if m := managers(t, fc.cl, ns, "web"); !strings.Contains(m, "kustomize-controller") || strings.Contains(" "+m+" ", " deliver ") {
		t.Errorf("the Deployment's field managers are %q: want Flux's, not deliver's", m)
	}

	t.Run("diff when applied", func(t *testing.T) {
		r := run(t, nil, args([]string{"diff", "--env", "staging"}, kube, fc.GitArgs())...)
		if r.code != 0 || !strings.Contains(r.stdout, "branch main: "+commit+" (applied)") || !strings.Contains(r.stdout, "ready: True ReconciliationSucceeded") {
			t.Errorf("diff with the tip applied:\n%s", r)
		}
	})

	t.Run("apply-via direct refused", func(t *testing.T) {
		r := deploy("2.0.0", "--apply-via", "direct")
		if r.code != step.ExitPolicy || !strings.Contains(r.stderr, "environments.staging.apply: flux") {
			t.Errorf("--apply-via direct where the policy says flux: want exit %d naming the policy\n%s", step.ExitPolicy, r)
		}
		if fc.Head(t) != commit {
			t.Error("something was pushed")
		}
	})

	t.Run("missing Kustomization", func(t *testing.T) {
		r := deploy("2.0.0", "--flux-kustomization", fc.flux.Namespace+"/nope")
		if r.code != step.ExitUsage || !strings.Contains(r.stderr, "Kustomization "+fc.flux.Namespace+"/nope does not exist") {
			t.Errorf("a Kustomization that does not exist: want exit %d naming it\n%s", step.ExitUsage, r)
		}
		if fc.Head(t) != commit {
			t.Error("something was pushed")
		}
	})

	t.Run("suspended", func(t *testing.T) {
		fc.suspend(t, "staging", true)
		r := deploy("2.0.0")
		fc.suspend(t, "staging", false)
		if r.code != step.ExitPolicy || !strings.Contains(r.stderr, "is suspended by ") {
			t.Errorf("a suspended Kustomization: want exit %d saying who suspended it\n%s", step.ExitPolicy, r)
		}
		if fc.Head(t) != commit {
			t.Error("something was pushed")
		}
	})

	// A change pushed while the source is suspended is not applied: diff says so, apply is
	// refused; once resumed, apply has Flux apply it and waits, and diff agrees.
	fc.suspend(t, "source", true)
	if r := deploy("2.0.0", "--no-apply"); r.code != 0 {
		t.Fatalf("deploy --no-apply:\n%s", r)
	}
	pending := fc.Head(t)
	r = run(t, nil, args([]string{"diff", "--env", "staging"}, kube, fc.GitArgs())...)
	if r.code != step.ExitFailure || !strings.Contains(r.stdout, "branch main: "+pending+" (not applied yet)") ||
		!strings.Contains(r.stdout, "suspended: GitRepository/"+fc.flux.Namespace+"/config by ") ||
		!strings.Contains(r.stdout, pending[:12]+" deliver(staging): web 1.0.0 -> 2.0.0") || !strings.Contains(r.stdout, "last applied: "+commit) {
		t.Errorf("diff with the tip not applied: want exit 1 listing the commit\n%s", r)
	}
	if r := run(t, nil, args([]string{"apply", "--env", "staging"}, kube, fc.GitArgs())...); r.code != step.ExitPolicy {
		t.Errorf("apply with the source suspended: want exit %d\n%s", step.ExitPolicy, r)
	}
	fc.suspend(t, "source", false)
	r = run(t, nil, args([]string{"apply", "--env", "staging"}, kube, fc.GitArgs())...)
	if r.code != 0 || !strings.Contains(r.stdout, "rollout=ready") {
		t.Fatalf("apply through Flux:\n%s", r)
	}
	if img, _ := runningImage(t, fc.cl, ns, "web"); img != fc.Reg.Host+"/team/web:2.0.0@"+d2 {
		t.Errorf("after apply web runs %s, want 2.0.0", img)
	}
	if r := run(t, nil, args([]string{"diff", "--env", "staging"}, kube, fc.GitArgs())...); r.code != 0 {
		t.Errorf("diff after apply:\n%s", r)
	}
}

// TestFluxConcurrentDeploys: two pipelines deploy to an environment handed to Flux by flags
// (no deliver.yaml) at the same time; both land, and each reports the revision Flux applied,
// which contains its own commit (the later push, when Flux fetched both at once).
func TestFluxConcurrentDeploys(t *testing.T) {
	t.Parallel()
	fc := newFluxConfig(t, fluxOptions{services: []string{"web", "api"}, envs: []string{"production"}})
	digests := map[string]string{}
	for _, svc := range []string{"web", "api"} {
		digests[svc] = fc.PushImage(t, "team/"+svc, "3.0.0")
	}
	before := fc.Commits(t)
	results := map[string]result{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, svc := range []string{"web", "api"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := run(t, nil, args([]string{"deploy", "--env", "production", "--image", svc + "=" + fc.Reg.Ref("team/"+svc, "3.0.0"),
				"--flux-kustomization", fc.kustomization("production"), "--kubeconfig", fc.cl.Kubeconfig, "--timeout", "90s"}, fc.GitArgs())...)
			mu.Lock()
			results[svc] = r
			mu.Unlock()
		}()
	}
	wg.Wait()
	log, err := fc.Git.Log(fc.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != before+2 {
		t.Fatalf("%d commits, want %d: both deploys land", len(log), before+2)
	}
	order := map[string]int{} // commit -> position, 0 the newest
	for i, c := range log {
		order[c.Hash.String()] = i
	}
	for svc, r := range results {
		if r.code != 0 {
			t.Fatalf("deploy of %s:\n%s", svc, r)
		}
		_, rest, _ := strings.Cut(r.stdout, "commit=")
		own, _, _ := strings.Cut(rest, " ")
		pos, ok := order[own]
		if !ok {
			t.Fatalf("deploy of %s reports commit %q, not on the branch", svc, own)
		}
		// The revision Flux applied is this commit or a later one (on a linear history, a later
		// one contains it).
		appliedOK := false
		for c, p := range order {
			if p <= pos && strings.Contains(r.stderr, ": applied "+c[:12]) {
				appliedOK = true
			}
		}
		if !appliedOK {
			t.Errorf("deploy of %s (commit %s) does not report a revision that contains it:\n%s", svc, own[:12], r.stderr)
		}
		if img, ready := runningImage(t, fc.cl, fc.ns["production"], svc); img != fc.Reg.Host+"/team/"+svc+":3.0.0@"+digests[svc] || ready != "1/1" {
			t.Errorf("%s runs %s (%s ready), want 3.0.0", svc, img, ready)
		}
	}
}

// longTag is a valid image tag too long for a label value (63 characters at most).
var longTag = "2.0.0-" + strings.Repeat("a", 64)

// versionLabel copies web's image tag into the Deployment's label "version" (replacements:
// kustomize does not check label values; the API server does).
const versionLabel = `replacements:
  - source:
      kind: Deployment
      name: web
      fieldPath: spec.template.spec.containers.0.image
      options:
        delimiter: ":"
        index: 2
    targets:
      - select:
          kind: Deployment
          name: web
        fieldPaths:
          - metadata.labels.version
        options:
          create: true
`

// TestFluxRolloutFailureReverts: a change Flux cannot apply, or whose rollout never becomes
// ready, ends with exit 7 quoting Flux or the workload, and the revert deliver pushes is
// applied through Flux: the Kustomization ends Ready on the revert commit and web runs the
// previous image again.
func TestFluxRolloutFailureReverts(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// wait: the Kustomization's own health checks (spec.wait).
		wait    bool
		edit    func(files map[string]string)
		image   func(fc *fluxConfig) string // the broken image
		timeout string
		say     string // in deliver's error
	}{
		{
			// deliver's render check passes; the API server refuses the label (Flux's dry run):
			// a failure only Flux's apply finds. (The direct mode's dry run before the push
			// finds it too.)
			name: "rejected by the API server", wait: true,
			edit: func(files map[string]string) {
				files["overlays/staging/kustomization.yaml"] += versionLabel
			},
			image:   func(fc *fluxConfig) string { return fc.Reg.Ref("team/web", longTag) },
			timeout: "90s", say: "ReconciliationFailed",
		},
		{
			// Flux reports Ready at once (no health checks); deliver's own wait times out.
			name: "never ready", wait: false,
			image:   func(fc *fluxConfig) string { return fc.Reg.Ref("team/never-ready", "2.0.0") },
			timeout: "15s", say: "Deployment/",
		},
		{
			// Flux's health check fails after its timeout (30 s, the least it takes).
			name: "never ready, Flux health checks", wait: true,
			image:   func(fc *fluxConfig) string { return fc.Reg.Ref("team/never-ready", "2.0.0") },
			timeout: "90s", say: "HealthCheckFailed",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := newFluxConfig(t, fluxOptions{services: []string{"web"}, envs: []string{"staging"}, policy: fluxPolicy,
				wait: map[string]bool{"staging": tt.wait}, edit: tt.edit})
			good := fc.PushImage(t, "team/web", "1.0.0", longTag)
			fc.PushImage(t, "team/never-ready", "2.0.0")
			base := []string{"deploy", "--env", "staging", "--kubeconfig", fc.cl.Kubeconfig}
			// Without digests, the label holds the bare tag.
			if r := run(t, nil, args(base, []string{"--image", "web=" + fc.Reg.Ref("team/web", "1.0.0"), "--digest-pin=false", "--timeout", "90s"}, fc.GitArgs())...); r.code != 0 {
				t.Fatalf("first deploy:\n%s", r)
			}
			goodCommit := fc.Head(t)
			goodRef := fc.Reg.Ref("team/web", "1.0.0")
			if img, _ := runningImage(t, fc.cl, fc.ns["staging"], "web"); img != goodRef {
				t.Fatalf("web runs %s after the first deploy, want %s (digest %s)", img, goodRef, good)
			}

			r := run(t, nil, args(base, []string{"--image", "web=" + tt.image(fc), "--digest-pin=false", "--timeout", tt.timeout}, fc.GitArgs())...)
			if r.code != step.ExitRollout {
				t.Fatalf("exit %d, want %d (rollout failed)\n%s", r.code, step.ExitRollout, r)
			}
			for _, s := range []string{tt.say, "reverting the config repo", "the previous version is running again"} {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("stderr does not say %q:\n%s", s, r.stderr)
				}
			}
			log, err := fc.Git.Log(fc.Name, "main")
			if err != nil {
				t.Fatal(err)
			}
			rec, err := release.Parse(log[0].Message)
			if err != nil || rec.Action != release.ActionRevert || log[2].Hash.String() != goodCommit {
				t.Fatalf("the tip is not a revert of the failed deploy: %+v, %v", rec, err)
			}
			revert := log[0].Hash.String()
			if applied, ready, reason := fc.status(t, "staging"); applied != revert || ready != "True" {
				t.Errorf("the Kustomization applied %s (Ready=%s %s), want the revert %s, Ready", applied, ready, reason, revert)
			}
			if img, ready := runningImage(t, fc.cl, fc.ns["staging"], "web"); img != goodRef || ready != "1/1" {
				t.Errorf("web runs %s (%s ready) after the revert, want %s", img, ready, goodRef)
			}
			for _, p := range podImages(t, fc.cl, fc.ns["staging"], "web") {
				if p != goodRef {
					t.Errorf("a ready pod runs %s after the revert, want %s", p, goodRef)
				}
			}
		})
	}
}

// TestFluxLeastPrivilege: deliver deploys through Flux, shows the state and re-applies as a
// ServiceAccount with exactly examples/rbac/flux-deployer.yaml's rights (a token kubeconfig,
// as a CI job gets it), which cannot change a workload; apply, without the right to patch the
// Kustomization, warns and waits as a deploy does.
func TestFluxLeastPrivilege(t *testing.T) {
	t.Parallel()
	fc := newFluxConfig(t, fluxOptions{services: []string{"web"}, envs: []string{"staging"}, policy: fluxPolicy})
	digest := fc.PushImage(t, "team/web", "1.0.0")
	data, err := os.ReadFile(filepath.Join("..", "examples", "rbac", "flux-deployer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	saNS := uniqueNS("deliver-system")
	manifest := strings.NewReplacer("deliver-system", saNS, "flux-system", fc.flux.Namespace, "web-staging", fc.ns["staging"]).Replace(string(data))
	file := filepath.Join(t.TempDir(), "rbac.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	fixture.Kubectl(t, fc.cl, "apply", "-f", file)
	as := "--as=system:serviceaccount:" + saNS + ":deliver"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, verb := range []string{"patch", "update", "create", "delete"} {
		out, _ := fc.cl.Kubectl(ctx, "auth", "can-i", as, verb, "deployments", "-n", fc.ns["staging"])
		if got := strings.TrimSpace(string(out)); got != "no" {
			t.Fatalf("the example lets the account %s deployments (%q): the test would prove nothing", verb, got)
		}
	}
	token := strings.TrimSpace(fixture.Kubectl(t, fc.cl, "create", "token", "deliver", "-n", saNS, "--duration=1h"))
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: deliver
  user:
    token: %s
contexts:
- name: deliver
  context: {cluster: test, user: deliver}
current-context: deliver
`, fc.cl.Config.Host, base64.StdEncoding.EncodeToString(fc.cl.Config.CAData), token)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	kube := []string{"--kubeconfig", kubeconfig, "--timeout", "90s"}

	r := run(t, nil, args([]string{"deploy", "--env", "staging", "--image", "web=" + fc.Reg.Ref("team/web", "1.0.0")}, kube, fc.GitArgs())...)
	if r.code != 0 {
		t.Fatalf("deploy as the least-privileged account:\n%s", r)
	}
	if strings.Contains(r.stdout+r.stderr, token) {
		t.Error("deliver printed the service account's token")
	}
	want := fc.Reg.Host + "/team/web:1.0.0@" + digest
	if img, ready := runningImage(t, fc.cl, fc.ns["staging"], "web"); img != want || ready != "1/1" {
		t.Errorf("web runs %s (%s ready), want %s", img, ready, want)
	}
	if r := run(t, nil, args([]string{"diff", "--env", "staging"}, kube, fc.GitArgs())...); r.code != 0 {
		t.Errorf("diff as the least-privileged account:\n%s", r)
	}
	r = run(t, nil, args([]string{"apply", "--env", "staging"}, kube, fc.GitArgs())...)
	if r.code != 0 || !strings.Contains(r.stderr, "cannot ask Flux to apply") {
		t.Errorf("apply as the least-privileged account: want success with a warning that it cannot re-apply\n%s", r)
	}
}

// TestFluxPullRequestWaitMerged: in pull-request mode with --wait-merged, the merged change is
// handed to Flux like a pushed one: deliver waits until Flux applied the merge and the rollout
// is ready, and applies nothing itself.
func TestFluxPullRequestWaitMerged(t *testing.T) {
	t.Parallel()
	fluxNS := uniqueNS("flux")
	ns := uniqueNS("flux-prod")
	policy := "environments:\n  production:\n    via: pull-request\n    apply: flux\n    flux:\n      kustomization: " + fluxNS + "/production\n"
	gc := newGiteaConfig(t, prodApp(ns, policy))
	cl := testenv.SharedCluster(t)
	f := startFlux(t, cl, fluxNS, testenv.GitRepository{URL: gc.g.RepoURL(gc.name), Username: testenv.GiteaAdmin, Password: gc.g.Token},
		fluxOptions{envs: []string{"production"}})
	fc := &fluxConfig{cl: cl, flux: f}
	fc.waitApplied(t, "production", gc.head(t))
	digest, err := gc.reg.PushRandomImage("team/web", "1.4.3")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() {
		done <- run(t, nil, args([]string{"deploy", "--env", "production", "--image", "web=" + gc.reg.Ref("team/web", "1.4.3"),
			"--wait-merged", "--merge-timeout", "2m", "--merge-poll-interval", "200ms",
			"--kubeconfig", cl.Kubeconfig, "--timeout", "90s"}, gc.args())...)
	}()
	pr := gc.waitPull(t, func(p testenv.GiteaPull) bool { return p.Head.SHA != "" })
	mergeInGitea(t, gc.g, gc.name, pr.Number)
	r := <-done
	if r.code != 0 || !strings.Contains(r.stdout, "rollout=ready") {
		t.Fatalf("deploy --wait-merged through Flux:\n%s", r)
	}
	merged := gc.head(t)
	if !strings.Contains(r.stderr, "Kustomization/"+fluxNS+"/production: applied "+merged[:12]) {
		t.Errorf("deliver does not report that Flux applied the merge %s:\n%s", merged[:12], r.stderr)
	}
	if applied, ready, _ := fc.status(t, "production"); applied != merged || ready != "True" {
		t.Errorf("the Kustomization applied %s (Ready=%s), want the merge %s", applied, ready, merged)
	}
	if img, ready := runningImage(t, cl, ns, "web"); img != gc.reg.Host+"/team/web:1.4.3@"+digest || ready != "1/1" {
		t.Errorf("web runs %s (%s ready), want 1.4.3", img, ready)
	}
	if m := managers(t, cl, ns, "web"); strings.Contains(" "+m+" ", " deliver ") {
		t.Errorf("the Deployment's field managers are %q: deliver applied it itself", m)
	}
}

// TestFluxSourceCannotFetch: when Flux's source cannot fetch the config repo (its credentials
// are gone), the deploy ends with exit 6 quoting the source's condition, and is not reverted:
// Flux applied nothing of it, and would not fetch a revert either.
func TestFluxSourceCannotFetch(t *testing.T) {
	t.Parallel()
	fc := newFluxConfig(t, fluxOptions{services: []string{"web"}, envs: []string{"staging"}, policy: fluxPolicy})
	fc.PushImage(t, "team/web", "1.0.0")
	if err := fc.flux.Patch(context.Background(), testenv.GitRepositoryGVR, "config", []byte(`{"spec":{"secretRef":null}}`)); err != nil {
		t.Fatal(err)
	}
	r := run(t, nil, args([]string{"deploy", "--env", "staging", "--image", "web=" + fc.Reg.Ref("team/web", "1.0.0"),
		"--kubeconfig", fc.cl.Kubeconfig, "--timeout", "15s"}, fc.GitArgs())...)
	if r.code != step.ExitApply {
		t.Fatalf("exit %d, want %d (Flux did not fetch the commit)\n%s", r.code, step.ExitApply, r)
	}
	pushed := fc.Head(t)
	for _, s := range []string{"GitRepository/" + fc.flux.Namespace + "/config did not fetch a revision containing " + pushed[:12], "Ready=False", "is not reverted"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr does not say %q:\n%s", s, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "reverting") {
		t.Errorf("deliver reverted a change Flux never fetched:\n%s", r.stderr)
	}
}

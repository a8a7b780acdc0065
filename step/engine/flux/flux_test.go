package flux_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/cluster"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/engine"
	"github.com/deliverhq/deliver/step/engine/flux"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const initialImages = `images:
  - name: web
    newName: registry.example/team/web
    newTag: "1.0"
`

// env is a config repo on a git server, the real Flux controllers reconciling its staging
// overlay into a namespace of the shared cluster, and the engine that drives them.
type env struct {
	t       *testing.T
	c       *testenv.Cluster
	flux    *testenv.Flux
	git     *testenv.GitServer
	url     string
	ns      string // the overlay's namespace
	client  *cluster.Client
	engine  *flux.Flux
	initial string // the commit Flux applied first
}

type envOptions struct {
	wait         bool // the Kustomization's spec.wait
	featureGates string
	edit         func(files map[string]string) // changes the seed files
}

var nsSeq struct {
	sync.Mutex
	n int
}

// newEnv sets up an env and waits until Flux applied the repo's first commit.
func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	nsSeq.Lock()
	nsSeq.n++
	ns := fmt.Sprintf("fluxeng-%d-%d", os.Getpid()%10000, nsSeq.n)
	nsSeq.Unlock()
	e := &env{t: t, c: testenv.SharedCluster(t), git: testenv.NewGitServer(t), ns: ns}
	files := fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": ns}, OverlayImages: initialImages, Replicas: 2}.Files("unused")
	if o.edit != nil {
		o.edit(files)
	}
	seed := t.TempDir()
	fixture.WriteFiles(t, seed, files)
	url, err := e.git.CreateRepo("config", "main", seed)
	if err != nil {
		t.Fatal(err)
	}
	e.url = url
	e.flux = testenv.NewFlux(t, e.c, testenv.FluxOptions{FeatureGates: o.featureGates})
	ctx := context.Background()
	if err := e.flux.CreateGitRepository(ctx, testenv.GitRepository{Name: "config", URL: url, Branch: "main", Username: e.git.Username, Password: e.git.Password}); err != nil {
		t.Fatal(err)
	}
	if err := e.flux.CreateKustomization(ctx, testenv.Kustomization{Name: "staging", Source: "config", Path: "./overlays/staging", Prune: true, Wait: o.wait}); err != nil {
		t.Fatal(err)
	}
	e.client, err = cluster.Connect(ctx, cluster.Options{Kubeconfig: e.c.Kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	e.engine = flux.New(e.client, flux.Options{Namespace: e.flux.Namespace, Name: "staging", Branch: "main", URL: url, Path: "overlays/staging",
		Warn: func(m string) { t.Logf("warning: %s", m) }})
	head, err := e.git.Head("config", "main")
	if err != nil {
		t.Fatal(err)
	}
	e.initial = head.String()
	if _, err := e.engine.Sync(ctx, engine.Request{Commit: e.initial, Timeout: 2 * time.Minute, Progress: e.logf("first sync")}); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	return e
}

func (e *env) logf(prefix string) func(string) {
	return func(line string) { e.t.Logf("%s: %s", prefix, line) }
}

// clone clones the config repo as deliver does.
func (e *env) clone() *configrepo.Repo {
	e.t.Helper()
	repo, err := configrepo.Clone(context.Background(), configrepo.Options{URL: e.url, Branch: "main",
		Auth: configrepo.Auth{Username: e.git.Username, Password: e.git.Password}, Timeout: time.Minute})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = repo.Close() })
	return repo
}

// setImage pushes, through repo, a commit that sets web's image in the staging overlay, and
// returns it.
func (e *env) setImage(repo *configrepo.Repo, image string) string {
	e.t.Helper()
	img, err := kustomize.ParseImageArg("web=" + image)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := repo.Update(context.Background(), configrepo.Signature{Name: "test", Email: "t@t"}, func(_ context.Context, dir string) (string, []string, error) {
		changed, err := kustomize.SetImages(filepath.Join(dir, "overlays", "staging"), []types.Image{img})
		if err != nil || !changed {
			return "", nil, err
		}
		return "web " + image, []string{"overlays/staging/kustomization.yaml"}, nil
	})
	if err != nil || !res.Changed {
		e.t.Fatalf("pushing web=%s: %+v, %v", image, res, err)
	}
	return res.Commit
}

// push pushes, through repo, a commit that writes content to path.
func (e *env) push(repo *configrepo.Repo, path, content string) string {
	e.t.Helper()
	res, err := repo.Update(context.Background(), configrepo.Signature{Name: "test", Email: "t@t"}, func(_ context.Context, dir string) (string, []string, error) {
		return "write " + path, []string{path}, os.WriteFile(filepath.Join(dir, filepath.FromSlash(path)), []byte(content), 0o644)
	})
	if err != nil || !res.Changed {
		e.t.Fatalf("pushing %s: %+v, %v", path, res, err)
	}
	return res.Commit
}

func containsIn(repo *configrepo.Repo) engine.Contains {
	return repo.Contains
}

// image returns the image web's Deployment runs, and its ready replicas.
func (e *env) image() (string, int64) {
	e.t.Helper()
	u, err := e.client.Get(context.Background(), cluster.ObjectRef{Group: "apps", Kind: "Deployment", Namespace: e.ns, Name: "web"})
	if err != nil {
		e.t.Fatal(err)
	}
	containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
	ready, _, _ := unstructured.NestedInt64(u.Object, "status", "readyReplicas")
	return containers[0].(map[string]any)["image"].(string), ready
}

// TestSyncLands: a pushed image change is fetched, applied and rolled out through Flux, and
// Sync reports the pushed commit, the Deployment it waited for, and the phases' times; with
// Flux's own health checks (wait: true) and without (deliver waits for the rollout itself).
func TestSyncLands(t *testing.T) {
	t.Parallel()
	for _, wait := range []bool{true, false} {
		t.Run(fmt.Sprintf("wait=%v", wait), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOptions{wait: wait})
			repo := e.clone()
			commit := e.setImage(repo, "registry.example/team/web:2.0")
			var lines []string
			res, err := e.engine.Sync(context.Background(), engine.Request{
				Commit: commit, Contains: containsIn(repo), Images: []string{"registry.example/team/web:2.0"},
				Timeout: 2 * time.Minute, Progress: func(l string) { lines = append(lines, l); t.Log(l) },
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.Revision != commit {
				t.Errorf("Revision = %s, want the pushed commit %s", res.Revision, commit)
			}
			want := cluster.ObjectRef{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: e.ns, Name: "web"}
			if len(res.Workloads) != 1 || res.Workloads[0] != want {
				t.Errorf("Workloads = %v, want [%v]", res.Workloads, want)
			}
			if !(0 < res.Fetched && res.Fetched <= res.Applied && res.Applied <= res.RolledOut) {
				t.Errorf("phase times out of order: fetched %s, applied %s, rolled out %s", res.Fetched, res.Applied, res.RolledOut)
			}
			if res.Fetched > 20*time.Second {
				t.Errorf("the source fetched the commit %s after the request: the annotation was not honoured (interval 1m)", res.Fetched)
			}
			t.Logf("fetched %s, applied %s, rolled out %s", res.Fetched, res.Applied, res.RolledOut)
			if img, ready := e.image(); img != "registry.example/team/web:2.0" || ready != 2 {
				t.Errorf("after Sync the Deployment runs %s with %d ready replicas, want registry.example/team/web:2.0 with 2", img, ready)
			}
			log := strings.Join(lines, "\n")
			for _, want := range []string{"asked Flux to fetch GitRepository/" + e.flux.Namespace + "/config now", "fetched " + commit[:12], "applied " + commit[:12]} {
				if !strings.Contains(log, want) {
					t.Errorf("progress does not say %q:\n%s", want, log)
				}
			}
		})
	}
}

// TestSyncConcurrentPushes: two pipelines push one after the other and wait at the same time;
// each reports a revision that contains its own commit (the second push, for both, when Flux
// picked up only that one).
func TestSyncConcurrentPushes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{wait: true})
	first, second := e.clone(), e.clone()
	a := e.setImage(first, "registry.example/team/web:2.0")
	b := e.push(second, "overlays/staging/extra.yaml", "# another pipeline's file\n")
	if b == a {
		t.Fatal("the second push did not make a new commit")
	}
	type outcome struct {
		res engine.Result
		err error
	}
	var wg sync.WaitGroup
	out := make([]outcome, 2)
	for i, w := range []struct {
		repo   *configrepo.Repo
		commit string
	}{{first, a}, {second, b}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.engine.Sync(context.Background(), engine.Request{Commit: w.commit, Contains: containsIn(w.repo), Timeout: 2 * time.Minute, Progress: e.logf(fmt.Sprint("pipeline ", i))})
			out[i] = outcome{res, err}
		}()
	}
	wg.Wait()
	for i, commit := range []string{a, b} {
		if out[i].err != nil {
			t.Fatalf("pipeline %d: %v", i, out[i].err)
		}
		// Flux fetches both pushes at once unless its interval struck between them.
		if got := out[i].res.Revision; got != b && got != commit {
			t.Errorf("pipeline %d (commit %s) reports revision %s, want %s or the later push %s, which contains it", i, commit[:12], got, commit[:12], b[:12])
		}
	}
	// Flux has applied the second push now: the first pipeline's commit counts as applied
	// through it, at once.
	start := time.Now()
	res, err := e.engine.Sync(context.Background(), engine.Request{Commit: a, Contains: containsIn(first), Timeout: time.Minute, Progress: e.logf("again")})
	if err != nil || res.Revision != b {
		t.Errorf("Sync of the first commit after the second was applied = %+v, %v; want revision %s", res, err, b[:12])
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Sync of a commit already applied through a later one took %s", took)
	}
}

// TestSyncFailures: Flux's failures for a revision containing the commit end the wait with
// Flux's reason (not its message, which varies) and wrap engine.ErrFailed and
// cluster.ErrRolloutFailed; a rollout that never becomes ready while Flux does not wait for it
// runs out deliver's own time, also as a failed rollout.
func TestSyncFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		o          envOptions
		push       func(e *env, repo *configrepo.Repo) string
		images     []string
		timeout    time.Duration
		wantReason string // "" for deliver's own timeout
		within     time.Duration
	}{
		{
			name: "broken overlay", o: envOptions{wait: true},
			push: func(e *env, repo *configrepo.Repo) string {
				return e.push(repo, "overlays/staging/kustomization.yaml", "resources:\n  - ../../base\n  - [broken\n")
			},
			timeout: 2 * time.Minute, wantReason: "BuildFailed", within: 30 * time.Second,
		},
		{
			name: "object the API server rejects", o: envOptions{wait: true},
			push: func(e *env, repo *configrepo.Repo) string {
				return e.push(repo, "base/web.yaml", strings.Replace(readFile(e, "base/web.yaml"), "replicas: 2", "replicas: -1", 1))
			},
			timeout: 2 * time.Minute, wantReason: "ReconciliationFailed", within: 30 * time.Second,
		},
		{
			name: "never-ready rollout, Flux health checks", o: envOptions{wait: true}, // Flux's shortest timeout: 30s
			push: func(e *env, repo *configrepo.Repo) string {
				return e.setImage(repo, "registry.example/team/web-never-ready:2.0")
			},
			images: []string{"registry.example/team/web-never-ready:2.0"}, timeout: 2 * time.Minute, wantReason: "HealthCheckFailed", within: 50 * time.Second,
		},
		{
			name: "never-ready rollout, deliver's wait", o: envOptions{wait: false},
			push: func(e *env, repo *configrepo.Repo) string {
				return e.setImage(repo, "registry.example/team/web-never-ready:2.0")
			},
			images: []string{"registry.example/team/web-never-ready:2.0"}, timeout: 15 * time.Second, within: 30 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tt.o)
			repo := e.clone()
			commit := tt.push(e, repo)
			start := time.Now()
			_, err := e.engine.Sync(context.Background(), engine.Request{Commit: commit, Contains: containsIn(repo), Images: tt.images, Timeout: tt.timeout, Progress: e.logf("sync")})
			took := time.Since(start)
			t.Logf("Sync ended after %s: %v", took.Round(time.Millisecond), err)
			if !errors.Is(err, cluster.ErrRolloutFailed) {
				t.Fatalf("Sync = %v, want an error wrapping cluster.ErrRolloutFailed", err)
			}
			if tt.wantReason != "" {
				if !errors.Is(err, engine.ErrFailed) || !strings.Contains(err.Error(), ": "+tt.wantReason+": ") {
					t.Errorf("error %q does not wrap engine.ErrFailed with Flux's reason %s", err, tt.wantReason)
				}
				if !strings.Contains(err.Error(), commit[:12]) {
					t.Errorf("error %q does not name the commit %s", err, commit[:12])
				}
			} else if errors.Is(err, engine.ErrFailed) {
				t.Errorf("error %q wraps engine.ErrFailed, but Flux reported no failure", err)
			}
			if took > tt.within {
				t.Errorf("Sync took %s to report the failure, want at most %s", took, tt.within)
			}
		})
	}
}

func readFile(e *env, path string) string {
	b, err := e.git.ReadFile("config", "main", path)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

// TestSuspended: a suspended Kustomization, or a suspended source, is refused by Check and by
// Sync at once, naming who suspended it, and never waited on.
func TestSuspended(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	for _, tc := range []struct {
		what string
		gvr  schema.GroupVersionResource
		name string
	}{
		{"Kustomization", testenv.KustomizationGVR, "staging"},
		{"GitRepository", testenv.GitRepositoryGVR, "config"},
	} {
		if err := e.flux.Patch(ctx, tc.gvr, tc.name, []byte(`{"spec":{"suspend":true}}`)); err != nil {
			t.Fatal(err)
		}
		st, err := e.engine.Check(ctx)
		if !errors.Is(err, engine.ErrSuspended) || !st.Suspended {
			t.Fatalf("%s suspended: Check = %+v, %v; want engine.ErrSuspended", tc.what, st, err)
		}
		if !strings.Contains(err.Error(), "suspended by ") || !strings.Contains(err.Error(), tc.what) {
			t.Errorf("%s suspended: error %q does not say which object and who suspended it", tc.what, err)
		}
		start := time.Now()
		_, err = e.engine.Sync(ctx, engine.Request{Commit: e.initial, Timeout: time.Minute})
		if !errors.Is(err, engine.ErrSuspended) || time.Since(start) > 5*time.Second {
			t.Errorf("%s suspended: Sync = %v after %s; want engine.ErrSuspended at once", tc.what, err, time.Since(start))
		}
		if err := e.flux.Patch(ctx, tc.gvr, tc.name, []byte(`{"spec":{"suspend":false}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.engine.Check(ctx); err != nil {
		t.Errorf("after resuming both: Check = %v", err)
	}
}

// TestCheckRefuses: Check names what it cannot follow before anything is pushed: a
// Kustomization that does not exist, a source that follows another branch or a tag, a source
// that is not a GitRepository.
func TestCheckRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	other := func(name, branch string) *flux.Flux {
		return flux.New(e.client, flux.Options{Namespace: e.flux.Namespace, Name: name, Branch: branch})
	}
	if _, err := other("nope", "main").Check(ctx); !errors.Is(err, engine.ErrNotFound) || !strings.Contains(err.Error(), "Kustomization/"+e.flux.Namespace+"/nope") {
		t.Errorf("missing Kustomization: Check = %v, want engine.ErrNotFound naming it", err)
	}
	if _, err := other("staging", "release").Check(ctx); !errors.Is(err, engine.ErrUnsupported) || !strings.Contains(err.Error(), "follows branch main, but deliver pushes to branch release") {
		t.Errorf("other branch: Check = %v, want engine.ErrUnsupported naming both branches", err)
	}
	if err := e.flux.Patch(ctx, testenv.GitRepositoryGVR, "config", []byte(`{"spec":{"ref":{"branch":null,"tag":"v1.0.0"}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.engine.Check(ctx); !errors.Is(err, engine.ErrUnsupported) || !strings.Contains(err.Error(), "tag v1.0.0") {
		t.Errorf("source on a tag: Check = %v, want engine.ErrUnsupported naming the tag", err)
	}
	if err := e.flux.Patch(ctx, testenv.KustomizationGVR, "staging", []byte(`{"spec":{"sourceRef":{"kind":"OCIRepository"}}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.engine.Check(ctx); !errors.Is(err, engine.ErrUnsupported) || !strings.Contains(err.Error(), "OCIRepository") {
		t.Errorf("OCI source: Check = %v, want engine.ErrUnsupported", err)
	}
}

// TestSyncReapply: with Reapply, Flux applies the revision it already has again, undoing a
// change made in the cluster by hand, and Sync waits until it did.
func TestSyncReapply(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{wait: true})
	ctx := context.Background()
	ref := cluster.ObjectRef{Group: "apps", Kind: "Deployment", Namespace: e.ns, Name: "web"}
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"registry.example/team/web:by-hand"}]}}}}`
	if _, err := e.client.MergePatch(ctx, ref, []byte(patch)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.engine.Sync(ctx, engine.Request{Commit: e.initial, Reapply: true, Timeout: 2 * time.Minute, Progress: e.logf("apply")}); err != nil {
		t.Fatal(err)
	}
	if img, _ := e.image(); img != "registry.example/team/web:1.0" {
		t.Errorf("after Reapply the Deployment runs %s, want the repo's registry.example/team/web:1.0", img)
	}
}

// TestSyncSourceCannotFetch: when the source cannot fetch (its credentials were revoked),
// Sync runs out of time with engine.ErrNotFetched, not as a failed rollout (nothing was applied,
// and a revert would not be fetched either), and quotes the source's own condition.
func TestSyncSourceCannotFetch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	if err := e.flux.Patch(ctx, testenv.GitRepositoryGVR, "config", []byte(`{"spec":{"secretRef":null}}`)); err != nil {
		t.Fatal(err)
	}
	repo := e.clone()
	commit := e.setImage(repo, "registry.example/team/web:2.0")
	_, err := e.engine.Sync(ctx, engine.Request{Commit: commit, Contains: containsIn(repo), Timeout: 15 * time.Second, Progress: e.logf("sync")})
	if !errors.Is(err, engine.ErrNotFetched) || errors.Is(err, cluster.ErrRolloutFailed) || errors.Is(err, engine.ErrFailed) {
		t.Fatalf("Sync = %v, want a timeout wrapping engine.ErrNotFetched only", err)
	}
	if !strings.Contains(err.Error(), "did not fetch a revision containing "+commit[:12]) || !strings.Contains(err.Error(), "Ready=False") {
		t.Errorf("error %q does not say the source did not fetch the commit, with its Ready condition", err)
	}
}

// TestLeastPrivilege: the engine needs no more than examples/rbac/flux-deployer.yaml grants:
// as that ServiceAccount (a token kubeconfig, as a CI job gets it), it checks the Kustomization,
// asks Flux to fetch, and waits for the rollout; and the account cannot change a workload.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{wait: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "rbac", "flux-deployer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	saNS := e.ns + "-ci"
	manifest := strings.NewReplacer("deliver-system", saNS, "flux-system", e.flux.Namespace, "web-staging", e.ns).Replace(string(data))
	file := filepath.Join(t.TempDir(), "rbac.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := e.c.Kubectl(ctx, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	kubectl("apply", "-f", file)
	as := "--as=system:serviceaccount:" + saNS + ":deliver"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "kustomizations.kustomize.toolkit.fluxcd.io/staging", "-n", e.flux.Namespace}, "yes"},
		{[]string{"patch", "kustomizations.kustomize.toolkit.fluxcd.io/staging", "-n", e.flux.Namespace}, "no"},
		{[]string{"patch", "gitrepositories.source.toolkit.fluxcd.io/config", "-n", e.flux.Namespace}, "yes"},
		{[]string{"get", "secrets/config-auth", "-n", e.flux.Namespace}, "no"},
		{[]string{"patch", "deployments", "-n", e.ns}, "no"},
		{[]string{"watch", "deployments", "-n", e.ns}, "yes"},
	} {
		out, _ := e.c.Kubectl(ctx, append([]string{"auth", "can-i", as}, c.args...)...)
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("can-i %s: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
	token := kubectl("create", "token", "deliver", "-n", saNS, "--duration=1h")
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
`, e.c.Config.Host, base64.StdEncoding.EncodeToString(e.c.Config.CAData), token)
	client, err := cluster.Connect(ctx, cluster.Options{KubeconfigData: []byte(kc)})
	if err != nil {
		t.Fatal(err)
	}
	eng := flux.New(client, flux.Options{Namespace: e.flux.Namespace, Name: "staging", Branch: "main", URL: e.url, Path: "overlays/staging"})
	if _, err := eng.Check(ctx); err != nil {
		t.Fatalf("Check as the least-privileged account: %v", err)
	}
	repo := e.clone()
	commit := e.setImage(repo, "registry.example/team/web:3.0")
	res, err := eng.Sync(ctx, engine.Request{Commit: commit, Contains: containsIn(repo), Images: []string{"registry.example/team/web:3.0"}, Timeout: 2 * time.Minute, Progress: e.logf("least privilege")})
	if err != nil {
		t.Fatalf("Sync as the least-privileged account: %v", err)
	}
	if res.Revision != commit || len(res.Workloads) != 1 {
		t.Errorf("Sync = %+v, want revision %s and the Deployment", res, commit)
	}
}

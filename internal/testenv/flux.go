package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// fluxBinaries are the programs FluxBinDir must hold.
var fluxBinaries = []string{"source-controller", "kustomize-controller"}

// fluxCRDs are the files of FluxBinDir/crds that StartFlux installs: every CRD the two
// controllers watch (kustomize-controller also watches OCIRepository, Bucket and
// ExternalArtifact sources).
var fluxCRDs = []string{
	"source.toolkit.fluxcd.io_gitrepositories.yaml",
	"source.toolkit.fluxcd.io_ocirepositories.yaml",
	"source.toolkit.fluxcd.io_buckets.yaml",
	"source.toolkit.fluxcd.io_helmrepositories.yaml",
	"source.toolkit.fluxcd.io_helmcharts.yaml",
	"source.toolkit.fluxcd.io_externalartifacts.yaml",
	"kustomize.toolkit.fluxcd.io_kustomizations.yaml",
}

// The Flux API groups and resources the helpers create.
var (
	GitRepositoryGVR = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	KustomizationGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	crdGVR           = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// FluxBinDir returns the directory holding the Flux controllers the tests run:
// $DELIVER_FLUX_BINS if set, else ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/flux-bins, where
// `make flux-bins` (hack/flux-bins.sh) builds source-controller and kustomize-controller and
// copies their CRDs into crds/. It returns the directory and an error naming what is missing.
func FluxBinDir() (string, error) {
	dir := os.Getenv("DELIVER_FLUX_BINS")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("locating the Flux controllers: %w; set DELIVER_FLUX_BINS or run `make flux-bins`", err)
		}
		dir = filepath.Join(cache, "deliver", "flux-bins")
	}
	var missing []string
	for _, b := range fluxBinaries {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	for _, f := range fluxCRDs {
		if _, err := os.Stat(filepath.Join(dir, "crds", f)); err != nil {
			missing = append(missing, "crds/"+f)
		}
	}
	if len(missing) > 0 {
		return dir, fmt.Errorf("flux controllers missing from %s: %s; run `make flux-bins` (or set DELIVER_FLUX_BINS)",
			dir, strings.Join(missing, ", "))
	}
	return dir, nil
}

// fluxBuildWait bounds how long StartFlux waits for a build of the controllers that is running
// (`hack/flux-bins.sh --background`, which `make test` starts): a cold one takes about 20
// minutes on 2 cores.
const fluxBuildWait = 45 * time.Minute

// waitFluxBinDir is FluxBinDir, but while a build of the controllers holds the lock of their
// directory (DIR/.lock), it waits for the build to end (at most fluxBuildWait, or until ctx
// ends) and looks again; the error of a build that ended without them quotes its log.
func waitFluxBinDir(ctx context.Context) (string, error) {
	dir, err := FluxBinDir()
	if err == nil {
		return dir, nil
	}
	lock, oerr := os.Open(filepath.Join(dir, ".lock"))
	if oerr != nil {
		return dir, err
	}
	defer lock.Close()
	deadline := time.Now().Add(fluxBuildWait)
	waited := false
	for syscall.Flock(int(lock.Fd()), syscall.LOCK_SH|syscall.LOCK_NB) != nil {
		waited = true
		if time.Now().After(deadline) {
			return dir, fmt.Errorf("%w (a build of the controllers is still running after %s; see %s)", err, fluxBuildWait, filepath.Join(dir, "build.log"))
		}
		select {
		case <-ctx.Done():
			return dir, fmt.Errorf("%w (while waiting for the build running into %s: %w)", err, dir, context.Cause(ctx))
		case <-time.After(time.Second):
		}
	}
	_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if !waited {
		return dir, err
	}
	if dir, err = FluxBinDir(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "build.log"))
		lines := strings.Split(strings.TrimRight(string(log), "\n"), "\n")
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		return dir, fmt.Errorf("%w; the build that was running ended without them, its log ends with:\n%s", err, strings.Join(lines, "\n"))
	}
	return dir, nil
}

// Flux is the real Flux source-controller and kustomize-controller running as local processes
// against a Cluster, as cluster admin, each in its own process group that the kernel kills if
// the starting thread dies. They watch one namespace only (Namespace, their RUNTIME_NAMESPACE),
// so that several Flux instances can share a cluster; the objects a Kustomization applies may
// be in any namespace. source-controller serves its artifacts on 127.0.0.1. Start one with
// StartFlux or NewFlux.
type Flux struct {
	// Namespace is where the controllers look for GitRepositories, Kustomizations and their
	// Secrets.
	Namespace string
	// BinDir is the directory of the controllers and their CRDs (see FluxBinDir).
	BinDir string
	// StorageAddr is the 127.0.0.1:PORT where source-controller serves artifacts.
	StorageAddr string
	// StartupTime is how long StartFlux took, CRDs included.
	StartupTime time.Duration

	cluster *Cluster
	dir     string // temp dir with logs/, storage/ and each controller's HOME and TMPDIR
	dyn     dynamic.Interface
	kube    kubernetes.Interface
	processes
}

// FluxOptions configure StartFlux.
type FluxOptions struct {
	// Namespace the controllers watch, created if it does not exist; "" means a new namespace
	// "flux-" plus a random suffix.
	Namespace string
	// FeatureGates are kustomize-controller's --feature-gates, e.g.
	// "CancelHealthCheckOnNewRevision=true"; "" keeps Flux's defaults.
	FeatureGates string
}

// StartFlux installs the Flux CRDs into c (if they are not there yet), creates the namespace
// and starts source-controller and kustomize-controller, waiting until both report ready. If
// ctx has no deadline, a limit of two minutes applies. On failure everything started is stopped
// again. Call Stop when done.
func StartFlux(ctx context.Context, c *Cluster, o FluxOptions) (*Flux, error) {
	begin := time.Now()
	bin, err := waitFluxBinDir(ctx)
	if err != nil {
		return nil, fmt.Errorf("starting Flux: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("starting Flux: creating dynamic client: %w", err)
	}
	kube, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("starting Flux: creating client: %w", err)
	}
	if o.Namespace == "" {
		suffix, err := randomToken(3)
		if err != nil {
			return nil, err
		}
		o.Namespace = "flux-" + suffix
	}
	dir, err := os.MkdirTemp("", "deliver-flux-")
	if err != nil {
		return nil, fmt.Errorf("starting Flux: creating temp dir: %w", err)
	}
	f := &Flux{Namespace: o.Namespace, BinDir: bin, cluster: c, dir: dir, dyn: dyn, kube: kube}
	if err := f.start(ctx, o); err != nil {
		_ = f.Stop()
		return nil, fmt.Errorf("starting Flux (after %s): %w", time.Since(begin).Round(time.Millisecond), err)
	}
	f.StartupTime = time.Since(begin)
	return f, nil
}

// NewFlux starts Flux on c for one test; see StartFlux. It calls t.Fatal if Flux cannot start,
// and in t.Cleanup stops it, after logging the end of each controller's log if the test failed.
func NewFlux(t testing.TB, c *Cluster, o FluxOptions) *Flux {
	t.Helper()
	f, err := StartFlux(context.Background(), c, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testenv: Flux controllers started in namespace %s in %s", f.Namespace, f.StartupTime.Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: the Flux controllers' logs end with:\n%s", f.LogTail(40))
		}
		if err := f.Stop(); err != nil {
			t.Errorf("stopping Flux: %v", err)
		}
	})
	return f
}

func (f *Flux) start(ctx context.Context, o FluxOptions) error {
	for _, d := range []string{"logs", "storage"} {
		if err := os.Mkdir(filepath.Join(f.dir, d), 0o700); err != nil {
			return fmt.Errorf("creating Flux dir: %w", err)
		}
	}
	if err := InstallFluxCRDs(ctx, f.cluster); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: f.Namespace}}
	if _, err := f.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", f.Namespace, err)
	}
	common := func(more ...string) []string {
		return append([]string{"--watch-all-namespaces=false", "--enable-leader-election=false", "--log-level=info", "--log-encoding=console"}, more...)
	}
	ports, err := f.startWithPorts(ctx, "source-controller", 3, func(p []int) []string {
		storage := "127.0.0.1:" + strconv.Itoa(p[2])
		return common(
			"--metrics-addr=127.0.0.1:"+strconv.Itoa(p[0]),
			"--health-addr=127.0.0.1:"+strconv.Itoa(p[1]),
			"--storage-path="+filepath.Join(f.dir, "storage"),
			"--storage-addr="+storage, "--storage-adv-addr="+storage)
	}, 1)
	if err != nil {
		return err
	}
	f.StorageAddr = "127.0.0.1:" + strconv.Itoa(ports[2])
	_, err = f.startWithPorts(ctx, "kustomize-controller", 2, func(p []int) []string {
		args := common(
			"--metrics-addr=127.0.0.1:"+strconv.Itoa(p[0]),
			"--health-addr=127.0.0.1:"+strconv.Itoa(p[1]))
		if o.FeatureGates != "" {
			args = append(args, "--feature-gates="+o.FeatureGates)
		}
		return args
	}, 1)
	return err
}

// InstallFluxCRDs applies the Flux CRDs from FluxBinDir()/crds to c with server-side apply
// (field manager "deliver-testenv"; running it again changes nothing) and waits until each is
// Established.
func InstallFluxCRDs(ctx context.Context, c *Cluster) error {
	bin, err := FluxBinDir()
	if err != nil {
		return fmt.Errorf("installing the Flux CRDs: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("installing the Flux CRDs: creating dynamic client: %w", err)
	}
	crds := dyn.Resource(crdGVR)
	var names []string
	for _, file := range fluxCRDs {
		data, err := os.ReadFile(filepath.Join(bin, "crds", file))
		if err != nil {
			return fmt.Errorf("installing the Flux CRDs: %w", err)
		}
		var crd unstructured.Unstructured
		if err := yaml.Unmarshal(data, &crd.Object); err != nil {
			return fmt.Errorf("installing the Flux CRDs: parsing %s: %w", file, err)
		}
		body, err := crd.MarshalJSON()
		if err != nil {
			return fmt.Errorf("installing the Flux CRDs: encoding %s: %w", file, err)
		}
		force := true
		if _, err := crds.Patch(ctx, crd.GetName(), types.ApplyPatchType, body,
			metav1.PatchOptions{FieldManager: "deliver-testenv", Force: &force}); err != nil {
			return fmt.Errorf("installing the Flux CRD %s: %w", crd.GetName(), err)
		}
		names = append(names, crd.GetName())
	}
	for _, name := range names {
		if err := pollUntil(ctx, "CRD "+name+" to be Established", func(ctx context.Context) (bool, error) {
			u, err := crds.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return conditionIs(u, "Established", "True"), nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// conditionIs reports whether u's status has condition typ with status want.
func conditionIs(u *unstructured.Unstructured, typ, want string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == typ {
			return m["status"] == want
		}
	}
	return false
}

// pollUntil polls check every 100 ms until it reports true or ctx ends; errors from check
// count as "not yet", and the last one is reported when ctx ends.
func pollUntil(ctx context.Context, what string, check func(context.Context) (bool, error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		ok, err := check(ctx)
		if ok {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, context.Cause(ctx), lastErr)
			}
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// startWithPorts starts controller name on fresh loopback ports and waits until
// GET /readyz on the health port (ports[health]) answers 200, retrying with other ports (up to
// three attempts) when it exits because a port was taken in the meantime.
func (f *Flux) startWithPorts(ctx context.Context, name string, nPorts int, args func(ports []int) []string, health int) ([]int, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(nPorts)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		p, err := f.spawn(name, args(ports)...)
		if err != nil {
			return nil, err
		}
		err = pollUntil(ctx, name+" to be ready", func(ctx context.Context) (bool, error) {
			if done, _ := p.exited(); done {
				return false, p.exitError()
			}
			_, err := httpGet(ctx, client, "http://127.0.0.1:"+strconv.Itoa(ports[health])+"/readyz")
			return err == nil, err
		})
		if done, _ := p.exited(); done {
			err = p.exitError()
		}
		if err == nil {
			return ports, nil
		}
		done, _ := p.exited()
		clash := done && strings.Contains(p.logTail(50), "address already in use")
		_ = p.stop(stopGrace)
		f.procs = f.procs[:len(f.procs)-1]
		if !clash || attempt == 3 {
			return nil, err
		}
	}
}

// spawn starts BinDir/name with args, logging to logs/name.log, with the admin kubeconfig in
// KUBECONFIG (the controllers have no --kubeconfig flag), Namespace as RUNTIME_NAMESPACE and a
// HOME and TMPDIR of its own (source-controller clones into TMPDIR), and records it for Stop.
func (f *Flux) spawn(name string, args ...string) (*component, error) {
	home, tmp := filepath.Join(f.dir, name, "home"), filepath.Join(f.dir, name, "tmp")
	for _, d := range []string{home, tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
	}
	override := map[string]string{
		"HOME": home, "TMPDIR": tmp,
		"XDG_CACHE_HOME": filepath.Join(home, ".cache"), "XDG_CONFIG_HOME": filepath.Join(home, ".config"),
		"KUBECONFIG": f.cluster.Kubeconfig, "RUNTIME_NAMESPACE": f.Namespace,
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		// Proxies would send the controllers' requests to the loopback servers elsewhere.
		if _, ok := override[k]; !ok && !strings.HasSuffix(strings.ToLower(k), "_proxy") {
			env = append(env, kv)
		}
	}
	for k, v := range override {
		env = append(env, k+"="+v)
	}
	return f.launch(name, filepath.Join(f.BinDir, name), f.dir, filepath.Join(f.dir, "logs", name+".log"), env, args...)
}

// Stop stops kustomize-controller and source-controller (SIGTERM to each process group,
// SIGKILL after 10 s) and removes their temporary directory. The namespace and the objects in
// it stay in the cluster. It is safe to call more than once; later calls return the first
// result.
func (f *Flux) Stop() error { return f.stopAll(f.dir, "Flux") }

// Alive returns an error naming the first controller that has exited, with the end of its log.
func (f *Flux) Alive() error {
	for _, p := range f.procs {
		if done, _ := p.exited(); done {
			return p.exitError()
		}
	}
	return nil
}

// LogTail returns the last n lines of each controller's log, each under its name.
func (f *Flux) LogTail(n int) string {
	var b strings.Builder
	for _, p := range f.procs {
		fmt.Fprintf(&b, "--- %s:\n%s\n", p.name, p.logTail(n))
	}
	return b.String()
}

// GitRepository describes a Flux GitRepository that CreateGitRepository creates in the Flux
// namespace.
type GitRepository struct {
	Name string
	// URL is the repository's clone URL, without credentials.
	URL string
	// Branch the source follows.
	Branch string
	// Username and Password go into a Secret "<Name>-auth" that the source references
	// (spec.secretRef); both empty means no Secret.
	Username, Password string
	// Interval between fetches; 0 means one minute, so that tests see the requested reconciles
	// rather than the periodic ones.
	Interval time.Duration
	// Suspend creates the source suspended.
	Suspend bool
}

// CreateGitRepository creates the GitRepository g (and its auth Secret) in f.Namespace.
func (f *Flux) CreateGitRepository(ctx context.Context, g GitRepository) error {
	if g.Interval == 0 {
		g.Interval = time.Minute
	}
	spec := map[string]any{
		"url":      g.URL,
		"interval": g.Interval.String(),
		"timeout":  "20s",
		"ref":      map[string]any{"branch": g.Branch},
	}
	if g.Suspend {
		spec["suspend"] = true
	}
	if g.Username != "" || g.Password != "" {
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: g.Name + "-auth", Namespace: f.Namespace},
			StringData: map[string]string{"username": g.Username, "password": g.Password},
		}
		if _, err := f.kube.CoreV1().Secrets(f.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Secret %s/%s: %w", f.Namespace, secret.Name, err)
		}
		spec["secretRef"] = map[string]any{"name": secret.Name}
	}
	return f.create(ctx, GitRepositoryGVR, "GitRepository", g.Name, spec)
}

// Kustomization describes a Flux Kustomization that CreateKustomization creates in the Flux
// namespace, reconciling Path of the GitRepository Source.
type Kustomization struct {
	Name string
	// Source is the name of a GitRepository in the same namespace.
	Source string
	// Path of the directory to build, relative to the repository root, e.g. "./overlays/staging".
	Path string
	// Prune deletes the objects that leave the directory.
	Prune bool
	// Wait makes Flux check the health of everything it applied before it reports Ready
	// (spec.wait); Timeout bounds apply and health checks (0: 30 s, which is also the least
	// Flux takes: it raises shorter ones to 30 s).
	Wait    bool
	Timeout time.Duration
	// Interval between reconciles; 0 means one minute.
	Interval time.Duration
	// TargetNamespace sets the namespace of every object, if not "".
	TargetNamespace string
	// Suspend creates the Kustomization suspended.
	Suspend bool
}

// CreateKustomization creates the Kustomization k in f.Namespace.
func (f *Flux) CreateKustomization(ctx context.Context, k Kustomization) error {
	if k.Interval == 0 {
		k.Interval = time.Minute
	}
	if k.Timeout == 0 {
		k.Timeout = 30 * time.Second
	}
	spec := map[string]any{
		"interval":  k.Interval.String(),
		"path":      k.Path,
		"prune":     k.Prune,
		"wait":      k.Wait,
		"timeout":   k.Timeout.String(),
		"sourceRef": map[string]any{"kind": "GitRepository", "name": k.Source},
	}
	if k.TargetNamespace != "" {
		spec["targetNamespace"] = k.TargetNamespace
	}
	if k.Suspend {
		spec["suspend"] = true
	}
	return f.create(ctx, KustomizationGVR, "Kustomization", k.Name, spec)
}

func (f *Flux) create(ctx context.Context, gvr schema.GroupVersionResource, kind, name string, spec map[string]any) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(),
		"kind":       kind,
		"metadata":   map[string]any{"name": name, "namespace": f.Namespace},
		"spec":       spec,
	}}
	if _, err := f.dyn.Resource(gvr).Namespace(f.Namespace).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating %s %s/%s: %w", kind, f.Namespace, name, err)
	}
	return nil
}

// Get reads the Flux object name of resource gvr (GitRepositoryGVR, KustomizationGVR) in
// f.Namespace.
func (f *Flux) Get(ctx context.Context, gvr schema.GroupVersionResource, name string) (*unstructured.Unstructured, error) {
	u, err := f.dyn.Resource(gvr).Namespace(f.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading %s %s/%s: %w", gvr.Resource, f.Namespace, name, err)
	}
	return u, nil
}

// Patch applies a JSON merge patch to the Flux object name of resource gvr in f.Namespace,
// e.g. {"spec":{"suspend":true}}.
func (f *Flux) Patch(ctx context.Context, gvr schema.GroupVersionResource, name string, mergePatch []byte) error {
	if _, err := f.dyn.Resource(gvr).Namespace(f.Namespace).Patch(ctx, name, types.MergePatchType, mergePatch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patching %s %s/%s: %w", gvr.Resource, f.Namespace, name, err)
	}
	return nil
}

// Package reliability_test proves how deliver behaves when things go wrong: servers that are
// down, fail, hang or drop connections in the middle of a phase (through a fault-injecting
// proxy in front of the real git server, registry and API server), signals in every phase,
// hostile input, secrets, and confinement to its temp dir and clone. Every case asserts the
// exit code, the message, the state left behind and that a re-run converges. deliver runs as a
// separate process, as CI runs it.
package reliability_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/kustomize"
)

// The tests mostly wait for deliver processes and servers, so they run more at once than the
// default -parallel (GOMAXPROCS) unless -test.parallel is given.
const defaultParallel = 6

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", fmt.Sprint(defaultParallel))
	}
	// What testenv.Main does (run, then stop the shared cluster), plus removing the binary,
	// which testenv.Main's os.Exit would leave behind.
	code := m.Run()
	if c := sharedCluster.Load(); c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the shared Kubernetes cluster: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// sharedCluster is the cluster testenv.SharedCluster returned, for TestMain to stop.
var sharedCluster atomic.Pointer[testenv.Cluster]

// cluster returns the test binary's shared cluster.
func cluster(t *testing.T) *testenv.Cluster {
	t.Helper()
	c := testenv.SharedCluster(t)
	sharedCluster.Store(c)
	return c
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// deliverBin builds the deliver binary on first use (fuzzing and -list never need it).
func deliverBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "deliver-reliability-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "deliver")
		build := exec.Command("go", "build", "-o", binPath, "github.com/deliverhq/deliver")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("building deliver: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// result of one deliver run.
type result struct {
	stdout, stderr string
	// code is the exit code, -1 when a signal ended the process.
	code int
	// signal is the signal that ended the process, if one did.
	signal syscall.Signal
	// hung is set when the test's deadline passed and the test killed deliver.
	hung    bool
	elapsed time.Duration
	// maxRSS is the peak resident set size, in bytes, sampled every 20ms.
	maxRSS int64
	// memoryCapped is set when the test killed deliver for using more than memoryCap.
	memoryCapped bool
	// tmp, home and dir are the TMPDIR, HOME and working directory deliver ran with.
	tmp, home, dir string
}

func (r result) String() string {
	how := fmt.Sprintf("exit %d", r.code)
	if r.signal != 0 {
		how = "killed by signal " + r.signal.String()
	}
	switch {
	case r.memoryCapped:
		how += fmt.Sprintf(" (RUNAWAY: killed by the test at %d MiB of memory)", memoryCap>>20)
	case r.hung:
		how += " (HUNG: killed by the test after its deadline)"
	}
	return fmt.Sprintf("%s after %s, max RSS %d MiB\n--- stdout\n%s--- stderr\n%s", how, r.elapsed.Round(time.Millisecond), r.maxRSS>>20, r.stdout, r.stderr)
}

// opts are how to run deliver.
type opts struct {
	env []string
	// deadline is when the test gives up and kills deliver (a hang); default 90s.
	deadline time.Duration
	// dir, home and tmp default to fresh directories.
	dir, home, tmp string
}

// memoryCap is where the test kills a deliver process whatever it does: the machine is shared.
const memoryCap = 2 << 30

// peakRSS returns the peak resident set size of process pid so far (VmHWM), 0 if unknown.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running deliver.
type proc struct {
	t              testing.TB
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	started        time.Time
	done           chan struct{}
	res            result
}

// start runs deliver with args in a clean environment (no CI variables of the machine running
// the tests): PATH, HOME, DOCKER_CONFIG and TMPDIR, then o.env.
func start(t testing.TB, o opts, args ...string) *proc {
	t.Helper()
	bin := deliverBin(t)
	for _, d := range []*string{&o.dir, &o.home, &o.tmp} {
		if *d == "" {
			*d = t.TempDir()
		}
	}
	if o.deadline == 0 {
		o.deadline = 90 * time.Second
	}
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = o.dir
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + o.home, "DOCKER_CONFIG=" + o.home, "TMPDIR=" + o.tmp}, o.env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.res = result{tmp: o.tmp, home: o.home, dir: o.dir}
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting deliver: %v", err)
	}
	go func() {
		defer close(p.done)
		timer := time.NewTimer(o.deadline)
		defer timer.Stop()
		exited := make(chan error, 1)
		go func() { exited <- p.cmd.Wait() }()
		// The kernel's rusage of a child counts the test binary's own peak (the child's memory
		// accounting starts from the parent's at fork), so the peak is sampled from /proc.
		sample := time.NewTicker(20 * time.Millisecond)
		defer sample.Stop()
		var err error
	loop:
		for {
			select {
			case err = <-exited:
				break loop
			case <-timer.C:
				p.res.hung = true
				_ = p.cmd.Process.Kill()
				err = <-exited
				break loop
			case <-sample.C:
				if hwm := peakRSS(p.cmd.Process.Pid); hwm > p.res.maxRSS {
					p.res.maxRSS = hwm
				}
				if p.res.maxRSS > memoryCap && !p.res.hung {
					// Protect the machine the tests share: stop a runaway at once.
					p.res.hung, p.res.memoryCapped = true, true
					_ = p.cmd.Process.Kill()
				}
			}
		}
		p.res.elapsed = time.Since(p.started)
		p.res.stdout, p.res.stderr = p.stdout.String(), p.stderr.String()
		p.res.code = 0
		if err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				p.res.code = -2
				p.res.stderr += "\n(test: waiting for deliver: " + err.Error() + ")"
			}
		}
		if ps := p.cmd.ProcessState; ps != nil {
			if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
				if ws.Signaled() {
					p.res.code, p.res.signal = -1, ws.Signal()
				} else {
					p.res.code = ws.ExitStatus()
				}
			}
		}
	}()
	return p
}

// waitStderr waits until stderr contains s; false if deliver ended or timeout passed first.
func (p *proc) waitStderr(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.stderr.String(), s) {
			return true
		}
		select {
		case <-p.done:
			return strings.Contains(p.stderr.String(), s)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return false
}

func (p *proc) signal(sig syscall.Signal) {
	_ = p.cmd.Process.Signal(sig)
}

// wait waits for deliver to end (or the deadline to kill it) and returns how it ended.
func (p *proc) wait() result {
	<-p.done
	return p.res
}

// run runs deliver to its end; see start.
func run(t testing.TB, env []string, args ...string) result {
	t.Helper()
	return start(t, opts{env: env}, args...).wait()
}

// runWithin runs deliver and fails the test unless it ends within limit (a hung server must
// never hang deliver beyond its timeout flags). The process is killed at limit plus a grace.
func runWithin(t testing.TB, limit time.Duration, env []string, args ...string) result {
	t.Helper()
	r := start(t, opts{env: env, deadline: limit + 20*time.Second}, args...).wait()
	if r.hung || r.elapsed > limit {
		t.Errorf("deliver took %s, more than the %s its timeout flags allow:\n%s", r.elapsed.Round(time.Millisecond), limit, r)
	}
	return r
}

// knownBug skips a test (case) that fails because of a deliver bug reported to the lead, unless
// DELIVER_RUN_KNOWN_BUGS is set: run with it to check a fix, then delete the bug note.
func knownBug(t *testing.T, bug string) {
	t.Helper()
	if bug != "" && os.Getenv("DELIVER_RUN_KNOWN_BUGS") == "" {
		t.Skip("known bug: " + bug + ", see report")
	}
}

// checkTempClean fails the test if deliver left anything in its TMPDIR.
func checkTempClean(t testing.TB, r result) {
	t.Helper()
	entries, err := os.ReadDir(r.tmp)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		t.Errorf("deliver left %s in its TMPDIR", strings.Join(names, ", "))
	}
}

func args(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// newServers starts a git server with the app's config repo and a registry (fixture.NewServers)
// and, when the test ends, kills what git http-backend processes of it a request cut short
// left running.
func newServers(t *testing.T, a fixture.App, o fixture.Options) *fixture.Servers {
	t.Helper()
	o.KillStrayBackends = true
	return fixture.NewServers(t, a, o)
}

// checkHistory asserts the tip of the config repo's branch is one of allowed and that every
// commit of the branch renders (no partial tree was ever pushed), and returns the tip.
func checkHistory(t *testing.T, s *fixture.Servers, overlay string, allowed ...string) string {
	t.Helper()
	tip := s.Head(t)
	ok := false
	for _, a := range allowed {
		ok = ok || a == tip
	}
	if !ok {
		t.Errorf("the branch tip is %s, want one of %s", tip, strings.Join(allowed, ", "))
	}
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range log {
		if c.NumParents() > 1 {
			t.Errorf("merge commit %s in a history that must be linear", c.Hash)
		}
		checkRenders(t, s.Git.BareDir(s.Name), c.Hash.String(), overlay)
	}
	return tip
}

// checkRenders exports the tree of commit from the bare repo and builds overlay.
func checkRenders(t *testing.T, bare, commit, overlay string) {
	t.Helper()
	dir := t.TempDir()
	archive := exec.Command("sh", "-c", fmt.Sprintf("git --git-dir=%q archive %s | tar -x -C %q", bare, commit, dir))
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("exporting %s: %v\n%s", commit, err, out)
	}
	if _, err := kustomize.Build(dir, overlay); err != nil {
		t.Errorf("commit %s does not render: %v", commit, err)
	}
}

// kubeconfigVia writes a copy of the cluster's kubeconfig whose server is the proxy (which
// must forward to the API server) and returns its path.
func kubeconfigVia(t *testing.T, c *testenv.Cluster, p *faultproxy.Proxy) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.Server = "https://" + p.Addr
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiServerProxy starts a proxy in front of the shared cluster's API server and returns it
// with a kubeconfig that goes through it.
func apiServerProxy(t *testing.T, c *testenv.Cluster) (*faultproxy.Proxy, string) {
	t.Helper()
	p := faultproxy.New(t, strings.TrimPrefix(c.Config.Host, "https://"))
	return p, kubeconfigVia(t, c, p)
}

// namespaceExists reports whether namespace ns exists in the cluster.
func namespaceExists(t *testing.T, c *testenv.Cluster, ns string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.Kubectl(ctx, "get", "namespace", ns, "-o", "name")
	if err != nil {
		if strings.Contains(err.Error(), "NotFound") {
			return false
		}
		t.Fatalf("kubectl get namespace %s: %v", ns, err)
	}
	return strings.TrimSpace(string(out)) != ""
}

// runningImage is the image of the Deployment's pod template and its ready/desired replicas.
func runningImage(t *testing.T, c *testenv.Cluster, ns, name string) (image, ready string) {
	t.Helper()
	out := fixture.Kubectl(t, c, "get", "deployment", name, "-n", ns, "-o",
		`jsonpath={.spec.template.spec.containers[0].image} {.status.readyReplicas}/{.spec.replicas}`)
	f := strings.Fields(out)
	if len(f) != 2 {
		t.Fatalf("unexpected kubectl output %q", out)
	}
	return f[0], f[1]
}

var nsSeq atomic.Int64

// uniqueNS returns a namespace name no other test of this run uses.
func uniqueNS(prefix string) string {
	return fmt.Sprintf("rel-%s-%d-%d", prefix, os.Getpid()%100000, nsSeq.Add(1))
}

package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	_ "embed" // for the kwok stages
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kwokStages are kwok v0.8.0's "fast" stages (kustomize/stage/fast of the kwok module): node
// initialisation and heartbeat, and pods that become ready at once, except pods running an
// image whose name contains "never-ready", which never do (for rollout-failure tests).
//
//go:embed kwok-stages.yaml
var kwokStages []byte

// k8sBinaries are the programs BinDir must hold.
var k8sBinaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"}

// FakeNodeName is the name of the cluster's single node, simulated by kwok:
// pods scheduled to it become Running and Ready without running anything.
const FakeNodeName = "kwok-node-0"

const (
	// defaultStartTimeout bounds StartCluster when its context has no
	// deadline.
	defaultStartTimeout = 2 * time.Minute
	// stopGrace is how long Stop waits for a component after SIGTERM
	// before it sends SIGKILL.
	stopGrace = 10 * time.Second
)

// BinDir returns the directory holding the Kubernetes binaries the cluster
// runs: $DELIVER_K8S_BINS if set, else ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/k8s-bins,
// where `make k8s-bins` (hack/k8s-bins.sh) builds them. It returns the
// directory and an error naming the missing programs if any of etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok
// is not there.
func BinDir() (string, error) {
	dir, err := binCache("DELIVER_K8S_BINS", "k8s-bins")
	if err != nil {
		return "", err
	}
	var missing []string
	for _, b := range k8sBinaries {
		if !isExecutable(filepath.Join(dir, b)) {
			missing = append(missing, b)
		}
	}
	if len(missing) > 0 {
		return dir, fmt.Errorf("kubernetes test binaries missing from %s: %s; run `make k8s-bins` (or set DELIVER_K8S_BINS)",
			dir, strings.Join(missing, ", "))
	}
	return dir, nil
}

// Cluster is a real Kubernetes control plane on 127.0.0.1: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, plus kwok
// simulating one node (FakeNodeName, 32 CPUs, 256Gi, 1 000 pods), so
// Deployments roll out and their pods become Ready. Each component is a
// child process in its own process group that the kernel kills if the
// starting thread dies. All state lives in a temporary directory that Stop
// removes. Start one with StartCluster, NewCluster or SharedCluster.
type Cluster struct {
	// Kubeconfig is the path of a kubeconfig file for a cluster admin
	// (group system:masters), with the credentials embedded.
	Kubeconfig string
	// Config is the same admin identity as a client-go configuration.
	Config *rest.Config
	// BinDir is the directory of the binaries the cluster runs (see BinDir).
	BinDir string
	// StartupTime is how long StartCluster took, from the call until the
	// node was Ready and the default ServiceAccount existed.
	StartupTime time.Duration

	dir string // temp dir with pki/, logs/, home/, tmp/, etcd/
	processes
}

// component is one running control-plane process.
type component struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error // set before done is closed
}

// StartCluster starts a new cluster and waits until it can run pods: the
// fake node is Ready and the ServiceAccount "default" exists in namespace
// "default". If ctx has no deadline, a limit of two minutes applies. On
// failure everything started is stopped again, and the error includes the
// end of the log of a component that exited. Call Stop when done.
func StartCluster(ctx context.Context) (*Cluster, error) {
	begin := time.Now()
	bin, err := BinDir()
	if err != nil {
		return nil, fmt.Errorf("starting Kubernetes cluster: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "deliver-k8s-")
	if err != nil {
		return nil, fmt.Errorf("starting Kubernetes cluster: creating temp dir: %w", err)
	}
	c := &Cluster{BinDir: bin, dir: dir}
	if err := c.start(ctx); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("starting Kubernetes cluster (after %s): %w", time.Since(begin).Round(time.Millisecond), err)
	}
	c.StartupTime = time.Since(begin)
	return c, nil
}

// start starts the components and creates the fake node; see StartCluster.
func (c *Cluster) start(ctx context.Context) error {
	for _, d := range []string{"pki", "logs", "home", "tmp"} {
		if err := os.Mkdir(filepath.Join(c.dir, d), 0o700); err != nil {
			return fmt.Errorf("creating cluster dir: %w", err)
		}
	}
	pki, err := writePKI(filepath.Join(c.dir, "pki"))
	if err != nil {
		return err
	}
	etcdURL, err := c.startEtcd(ctx)
	if err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, pki, etcdURL); err != nil {
		return err
	}
	stages := filepath.Join(c.dir, "kwok-stages.yaml")
	if err := os.WriteFile(stages, kwokStages, 0o600); err != nil {
		return fmt.Errorf("writing kwok stages: %w", err)
	}
	kubeconfig := "--kubeconfig=" + c.Kubeconfig
	if _, err := c.spawn("kube-controller-manager", kubeconfig,
		"--secure-port=0", "--leader-elect=false",
		"--use-service-account-credentials=false",
		"--service-account-private-key-file="+pki.saKey,
		"--root-ca-file="+pki.caCert,
		"--controllers=*", "--v=1"); err != nil {
		return err
	}
	if _, err := c.spawn("kube-scheduler", kubeconfig,
		"--secure-port=0", "--leader-elect=false", "--v=1"); err != nil {
		return err
	}
	if _, err := c.spawn("kwok", kubeconfig,
		"--config="+stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--node-lease-duration-seconds=40",
		"--node-ip=127.0.0.1", "--cidr=10.244.0.0/16"); err != nil {
		return err
	}
	core, err := corev1client.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("creating core/v1 client: %w", err)
	}
	if err := createFakeNode(ctx, core); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "node "+FakeNodeName+" to be Ready", func(ctx context.Context) (bool, error) {
		n, err := core.Nodes().Get(ctx, FakeNodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	}); err != nil {
		return err
	}
	if err := c.waitFor(ctx, "ServiceAccount default/default", func(ctx context.Context) (bool, error) {
		_, err := core.ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	}); err != nil {
		return err
	}
	return nil
}

// NewCluster starts a private cluster for one test; see StartCluster.
// Prefer SharedCluster: a cluster takes seconds to start and about half a
// gigabyte of memory. NewCluster calls t.Fatal if the cluster cannot start
// and stops it in t.Cleanup.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := StartCluster(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testenv: Kubernetes cluster started in %s", c.StartupTime.Round(time.Millisecond))
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping Kubernetes cluster: %v", err)
		}
	})
	return c
}

// sharedCluster is the cluster behind SharedCluster: started at most once per
// process, stopped by Main.
var sharedCluster sharedServer[*Cluster]

// SharedCluster returns the test binary's shared cluster, starting it on
// first use (safe for parallel tests: the others wait). It calls t.Fatal if
// the cluster cannot start, and later callers see the same error; it never
// skips. Tests must not depend on state other tests leave in it: use a
// namespace of their own. The test binary's TestMain must call Main, which
// stops the cluster; otherwise its processes are only killed when the test
// binary exits and its temp dir stays behind.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	return sharedCluster.get(t, func() (*Cluster, error) {
		c, err := StartCluster(context.Background())
		if err != nil {
			return nil, fmt.Errorf("shared cluster: %w", err)
		}
		return c, nil
	}, func(c *Cluster) string {
		return "Kubernetes cluster started in " + c.StartupTime.Round(time.Millisecond).String()
	})
}

// Main runs the tests of m, stops the shared cluster and the shared Gitea if a test started them,
// and exits with the tests' exit code (1 if stopping failed after passing
// tests). Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	for what, stop := range map[string]func() error{
		"Kubernetes cluster": func() error { return sharedCluster.stop((*Cluster).Stop) },
		"Gitea":              func() error { return sharedGitea.stop((*Gitea).Stop) },
	} {
		if err := stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stopping shared %s: %v\n", what, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Stop stops kwok, kube-scheduler, kube-controller-manager, kube-apiserver
// and etcd, in that order (SIGTERM to each process group, SIGKILL after
// 10 s), and removes the cluster's temporary directory. It is safe to call
// more than once; later calls return the first result.
func (c *Cluster) Stop() error { return c.stopAll(c.dir, "cluster") }

// Kubectl runs the cluster's kubectl as the admin with args and returns its
// standard output. A failure's error includes kubectl's standard error.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.BinDir, "kubectl"), append([]string{"--kubeconfig=" + c.Kubeconfig}, args...)...)
	cmd.Env = c.env()
	cmd.SysProcAttr = childSysProcAttr(false)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// env is the environment of every child process: the test's, with HOME,
// TMPDIR and the XDG directories inside the cluster's temp dir, and
// KUBECONFIG set to the admin kubeconfig.
func (c *Cluster) env() []string {
	return childEnv(map[string]string{
		"HOME":            filepath.Join(c.dir, "home"),
		"TMPDIR":          filepath.Join(c.dir, "tmp"),
		"XDG_CACHE_HOME":  filepath.Join(c.dir, "home", ".cache"),
		"XDG_CONFIG_HOME": filepath.Join(c.dir, "home", ".config"),
		"KUBECONFIG":      c.Kubeconfig,
	}, nil)
}

// spawn starts BinDir/name with args, logging to logs/name.log, and records
// it for Stop.
func (c *Cluster) spawn(name string, args ...string) (*component, error) {
	return c.launch(name, filepath.Join(c.BinDir, name), c.dir, filepath.Join(c.dir, "logs", name+".log"), c.env(), args...)
}

// drop stops p and forgets it.
func (c *Cluster) drop(p *component) {
	_ = p.stop(stopGrace)
	for i, q := range c.procs {
		if q == p {
			c.procs = append(c.procs[:i], c.procs[i+1:]...)
			break
		}
	}
}

// exited reports whether the process has ended, and how.
func (p *component) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

func (p *component) stop(grace time.Duration) error {
	if done, _ := p.exited(); done {
		return nil
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s: %w", p.name, err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("stopping %s: still running %s after SIGTERM, killed", p.name, grace)
}

// logTail returns the last n lines of the component's log.
func (p *component) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exitError describes a component that ended although it should run.
func (p *component) exitError() error {
	_, werr := p.exited()
	return fmt.Errorf("%s exited early (%v); last lines of its log:\n%s", p.name, werr, p.logTail(25))
}

// checkAlive returns an error for the first component that has exited.
func (c *Cluster) checkAlive() error {
	for _, p := range c.procs {
		if done, _ := p.exited(); done {
			return p.exitError()
		}
	}
	return nil
}

// waitFor polls check every 100 ms until it reports true, ctx ends or a
// component exits. Errors from check count as "not yet".
func (c *Cluster) waitFor(ctx context.Context, what string, check func(context.Context) (bool, error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if err := c.checkAlive(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := check(reqCtx)
		cancel()
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

// startWithPorts starts a component on freshly chosen free ports and waits
// for it to be ready, retrying with other ports (up to three attempts) when
// it exits because a port was taken in the meantime by another process.
func (c *Cluster) startWithPorts(ctx context.Context, name string, nPorts int,
	args func(ports []int) []string, ready func(ctx context.Context, ports []int) (bool, error),
) ([]int, error) {
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(nPorts)
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		p, err := c.spawn(name, args(ports)...)
		if err != nil {
			return nil, err
		}
		err = c.waitFor(ctx, name+" to be ready", func(ctx context.Context) (bool, error) { return ready(ctx, ports) })
		if err == nil {
			return ports, nil
		}
		done, _ := p.exited()
		clash := done && strings.Contains(p.logTail(50), "address already in use")
		c.drop(p)
		if !clash || attempt == 3 {
			return nil, err
		}
	}
}

// freePorts returns n distinct TCP ports that were free on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) startEtcd(ctx context.Context) (clientURL string, err error) {
	dataDir := filepath.Join(c.dir, "etcd")
	client := &http.Client{Timeout: 2 * time.Second}
	ports, err := c.startWithPorts(ctx, "etcd", 2, func(ports []int) []string {
		cu := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		pu := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		_ = os.RemoveAll(dataDir) // a failed attempt may have left one
		return []string{
			"--name=default", "--data-dir=" + dataDir,
			"--listen-client-urls=" + cu, "--advertise-client-urls=" + cu,
			"--listen-peer-urls=" + pu, "--initial-advertise-peer-urls=" + pu,
			"--initial-cluster=default=" + pu,
			"--unsafe-no-fsync=true", "--quota-backend-bytes=1073741824", "--log-level=warn",
		}
	}, func(ctx context.Context, ports []int) (bool, error) {
		body, err := httpGet(ctx, client, "http://127.0.0.1:"+strconv.Itoa(ports[0])+"/health")
		return err == nil && bytes.Contains(body, []byte(`"health":"true"`)), err
	})
	if err != nil {
		return "", err
	}
	return "http://127.0.0.1:" + strconv.Itoa(ports[0]), nil
}

func (c *Cluster) startAPIServer(ctx context.Context, pki *pkiFiles, etcdURL string) error {
	adminCert, err := tls.X509KeyPair(pki.admin.certPEM, pki.admin.keyPEM)
	if err != nil {
		return fmt.Errorf("loading admin client certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pki.caPEM)
	transport := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{adminCert}, MinVersion: tls.VersionTLS12,
	}}
	defer transport.CloseIdleConnections()
	client := &http.Client{Timeout: 2 * time.Second, Transport: transport}
	ports, err := c.startWithPorts(ctx, "kube-apiserver", 1, func(ports []int) []string {
		return []string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[0]),
			"--cert-dir=" + filepath.Join(c.dir, "pki"),
			"--tls-cert-file=" + pki.serverCert, "--tls-private-key-file=" + pki.serverKey,
			"--client-ca-file=" + pki.caCert,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pki.saPub, "--service-account-signing-key-file=" + pki.saKey,
			"--service-cluster-ip-range=10.0.0.0/24",
			"--authorization-mode=RBAC", "--endpoint-reconciler-type=none",
			"--allow-privileged=true", "--enable-priority-and-fairness=false", "--profiling=false", "--v=1",
		}
	}, func(ctx context.Context, ports []int) (bool, error) {
		_, err := httpGet(ctx, client, "https://127.0.0.1:"+strconv.Itoa(ports[0])+"/readyz")
		return err == nil, err
	})
	if err != nil {
		return err
	}
	host := "https://127.0.0.1:" + strconv.Itoa(ports[0])
	c.Config = &rest.Config{
		Host: host,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: pki.caPEM, CertData: pki.admin.certPEM, KeyData: pki.admin.keyPEM,
		},
		QPS:   200,
		Burst: 400,
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["deliver-test"] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: pki.caPEM}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: pki.admin.certPEM, ClientKeyData: pki.admin.keyPEM}
	kc.Contexts["deliver-test"] = &clientcmdapi.Context{Cluster: "deliver-test", AuthInfo: "admin", Namespace: metav1.NamespaceDefault}
	kc.CurrentContext = "deliver-test"
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, c.Kubeconfig); err != nil {
		return fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	return nil
}

// httpGet returns the body of a 200 response to GET url.
func httpGet(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// createFakeNode registers the kwok node every pod is scheduled to. It holds 1 000 pods, not a
// kubelet's default 110: one control plane serves a whole `make bench`, whose scenarios keep
// their workloads (P1 and P4 leave 80 pods, P6 adds 60), and with 110 P6's pods stayed Pending.
func createFakeNode(ctx context.Context, core corev1client.CoreV1Interface) error {
	resources := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: FakeNodeName,
			Annotations: map[string]string{
				"kwok.x-k8s.io/node":           "fake",
				"node.alpha.kubernetes.io/ttl": "0",
			},
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": FakeNodeName,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
			},
		},
		Status: corev1.NodeStatus{Capacity: resources, Allocatable: resources},
	}
	created, err := core.Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating node %s: %w", FakeNodeName, err)
	}
	if err == nil && len(created.Status.Allocatable) == 0 {
		created.Status.Capacity, created.Status.Allocatable = resources, resources
		if _, err := core.Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("setting capacity of node %s: %w", FakeNodeName, err)
		}
	}
	return nil
}

// pkiFiles are the certificates and keys of a cluster, written to disk.
type pkiFiles struct {
	caPEM                 []byte
	caCert                string
	serverCert, serverKey string
	saKey, saPub          string
	admin                 keyPair
}

// writePKI creates the cluster's certificate authority, the API server's
// serving certificate, the admin client certificate and the service-account
// signing key pair, and writes the files the components read into dir.
func writePKI(dir string) (*pkiFiles, error) {
	ca, err := newCertAuthority("deliver testenv kubernetes CA")
	if err != nil {
		return nil, err
	}
	server, err := ca.issue(certRequest{
		commonName: "kube-apiserver",
		dnsNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
		ips:    []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)},
		server: true,
	})
	if err != nil {
		return nil, err
	}
	admin, err := ca.issue(certRequest{commonName: "admin", organizations: []string{"system:masters"}})
	if err != nil {
		return nil, err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating service-account signing key: %w", err)
	}
	saPub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("encoding service-account public key: %w", err)
	}
	p := &pkiFiles{
		caPEM:      ca.certPEM,
		caCert:     filepath.Join(dir, "ca.crt"),
		serverCert: filepath.Join(dir, "apiserver.crt"),
		serverKey:  filepath.Join(dir, "apiserver.key"),
		saKey:      filepath.Join(dir, "sa.key"),
		saPub:      filepath.Join(dir, "sa.pub"),
		admin:      admin,
	}
	files := map[string][]byte{
		p.caCert:     ca.certPEM,
		p.serverCert: server.certPEM,
		p.serverKey:  server.keyPEM,
		p.saKey:      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		p.saPub:      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPub}),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return p, nil
}

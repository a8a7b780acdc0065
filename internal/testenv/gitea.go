package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// GiteaVersion is the Gitea release hack/gitea-bins.sh builds and the tests run against.
const GiteaVersion = "1.27.3"

// GiteaAdmin is the user name of the site administrator every Gitea starts with.
const GiteaAdmin = "ci"

// giteaSkipEnv is the variable that lets tests skip, instead of fail, when the Gitea binary is
// missing. It must be set explicitly: a missing binary is a failure everywhere else, CI included.
const giteaSkipEnv = "DELIVER_SKIP_GITEA"

// GiteaBinary returns the path of the Gitea server binary: DIR/gitea, where DIR is
// $DELIVER_GITEA_BINS if set, else ${XDG_CACHE_HOME:-$HOME/.cache}/deliver/gitea-bins, where
// `make gitea-bins` (hack/gitea-bins.sh) builds it. The error says how to build it when it is not
// there.
func GiteaBinary() (string, error) {
	dir, err := binCache("DELIVER_GITEA_BINS", "gitea-bins")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gitea")
	if !isExecutable(bin) {
		return bin, fmt.Errorf("the Gitea server binary is missing (%s); run `make gitea-bins` (or set DELIVER_GITEA_BINS)", bin)
	}
	return bin, nil
}

// Gitea is a real Gitea forge on 127.0.0.1 (GiteaVersion, sqlite, no SSH, no mail, no Actions),
// with one site administrator (GiteaAdmin) and an API token of theirs with every scope. Users,
// tokens with chosen scopes, repositories, branch protection, pull requests, reviews, commit
// statuses and the merge queue are all Gitea's own. Its state lives in a temporary directory
// that Stop removes. Start one with StartGitea, NewGitea or SharedGitea.
type Gitea struct {
	// URL is the web and git base URL, http(s)://127.0.0.1:PORT, without a trailing slash.
	URL string
	// APIURL is URL + "/api/v1".
	APIURL string
	// Password is GiteaAdmin's password; Token an API token of theirs with scope "all".
	Password, Token string
	// CACertPEM is the certificate of the authority that issued the server's certificate
	// (WithGiteaTLS); nil for plain HTTP.
	CACertPEM []byte
	// Bin is the Gitea binary that runs.
	Bin string
	// StartupTime is how long StartGitea took.
	StartupTime time.Duration

	dir      string
	proc     *component
	client   *http.Client
	stopOnce sync.Once
	stopErr  error
}

// GiteaOption configures StartGitea.
type GiteaOption func(*giteaOptions)

type giteaOptions struct {
	tls bool
	// pickPort chooses the port of each attempt (giteaPort; tests replace it).
	pickPort func() (int, error)
}

// WithGiteaTLS makes Gitea serve HTTPS with a certificate for 127.0.0.1 issued by a new
// certificate authority (Gitea.CACertPEM), like a self-hosted forge with a private CA.
func WithGiteaTLS() GiteaOption { return func(o *giteaOptions) { o.tls = true } }

const (
	// giteaStartAttempts bounds the retries on a port lost to a race.
	giteaStartAttempts = 5
	// giteaStartTimeout bounds one attempt at starting the web server, when ctx has no deadline.
	giteaStartTimeout = 90 * time.Second
)

// StartGitea starts a new Gitea on a free loopback port and waits until its API answers, then
// creates the administrator's token. A port taken between choosing it and binding it (Gitea then
// logs the bind error and idles instead of exiting) is detected and another port is tried, up to
// five times. Call Stop when done.
func StartGitea(ctx context.Context, opts ...GiteaOption) (*Gitea, error) {
	begin := time.Now()
	o := giteaOptions{pickPort: giteaPort}
	for _, opt := range opts {
		opt(&o)
	}
	bin, err := GiteaBinary()
	if err != nil {
		return nil, fmt.Errorf("starting Gitea: %w", err)
	}
	if _, err := exec.LookPath("git"); err != nil {
		return nil, fmt.Errorf("starting Gitea: it needs the git CLI on PATH: %w", err)
	}
	dir, err := os.MkdirTemp("", "deliver-gitea-")
	if err != nil {
		return nil, fmt.Errorf("starting Gitea: creating temp dir: %w", err)
	}
	g := &Gitea{Bin: bin, dir: dir}
	if err := g.start(ctx, o); err != nil {
		_ = g.Stop()
		return nil, fmt.Errorf("starting Gitea (after %s): %w", time.Since(begin).Round(time.Millisecond), err)
	}
	g.StartupTime = time.Since(begin)
	return g, nil
}

// NewGitea starts a private Gitea for one test; see StartGitea. Prefer SharedGitea with a
// repository of the test's own: a Gitea takes seconds to start. NewGitea stops it in t.Cleanup.
// When the binary is missing it fails the test, unless DELIVER_SKIP_GITEA=1 asks to skip.
func NewGitea(t testing.TB, opts ...GiteaOption) *Gitea {
	t.Helper()
	skipIfGiteaMissing(t)
	g, err := StartGitea(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("testenv: Gitea %s started in %s at %s", GiteaVersion, g.StartupTime.Round(time.Millisecond), g.URL)
	t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			t.Errorf("stopping Gitea: %v", err)
		}
	})
	return g
}

// skipIfGiteaMissing skips t when the Gitea binary is missing and DELIVER_SKIP_GITEA=1 says
// that is expected, with a message naming the binary and how to build it. Otherwise it does
// nothing, and starting Gitea fails the test with the same message.
func skipIfGiteaMissing(t testing.TB) {
	t.Helper()
	if _, err := GiteaBinary(); err != nil && os.Getenv(giteaSkipEnv) == "1" {
		t.Skipf("skipping: %v (%s=1)", err, giteaSkipEnv)
	}
}

// sharedGitea is the Gitea behind SharedGitea: started at most once per process, stopped by Main.
var sharedGitea sharedServer[*Gitea]

// SharedGitea returns the test binary's shared Gitea, starting it on first use (safe for
// parallel tests). Tests must use repositories and users of their own (names with t.Name() or a
// random suffix). It calls t.Fatal if Gitea cannot start; when the binary is missing it fails
// the test, unless DELIVER_SKIP_GITEA=1 asks to skip. The test binary's TestMain must call Main,
// which stops it.
func SharedGitea(t testing.TB) *Gitea {
	t.Helper()
	skipIfGiteaMissing(t)
	return sharedGitea.get(t, func() (*Gitea, error) {
		g, err := StartGitea(context.Background())
		if err != nil {
			return nil, fmt.Errorf("shared Gitea: %w", err)
		}
		return g, nil
	}, func(g *Gitea) string {
		return fmt.Sprintf("Gitea %s started in %s at %s", GiteaVersion, g.StartupTime.Round(time.Millisecond), g.URL)
	})
}

// Stop stops Gitea (SIGTERM to its process group, SIGKILL after 10 s) and removes its
// directory. It is safe to call more than once; later calls return the first result.
func (g *Gitea) Stop() error {
	g.stopOnce.Do(func() {
		var errs []error
		if g.proc != nil {
			if err := g.proc.stop(stopGrace); err != nil {
				errs = append(errs, err)
			}
		}
		if g.client != nil {
			g.client.CloseIdleConnections()
		}
		if err := os.RemoveAll(g.dir); err != nil {
			errs = append(errs, fmt.Errorf("removing Gitea dir: %w", err))
		}
		g.stopErr = errors.Join(errs...)
	})
	return g.stopErr
}

// Dir is Gitea's work directory (app.ini in custom/conf, the repositories in repos, the log in
// gitea.log).
func (g *Gitea) Dir() string { return g.dir }

// LogTail returns the last n lines of Gitea's log, for test failure messages.
func (g *Gitea) LogTail(n int) string {
	if g.proc == nil {
		return ""
	}
	return g.proc.logTail(n)
}

// Transport returns an HTTP transport that trusts the server's certificate (for WithGiteaTLS).
func (g *Gitea) Transport() http.RoundTripper { return g.client.Transport }

func (g *Gitea) start(ctx context.Context, o giteaOptions) error {
	for _, d := range []string{"custom/conf", "data", "repos", "home", "tmp"} {
		if err := os.MkdirAll(filepath.Join(g.dir, d), 0o700); err != nil {
			return fmt.Errorf("creating Gitea dir: %w", err)
		}
	}
	scheme := "http"
	transport := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8}
	var tlsINI string
	if o.tls {
		ca, err := newCertAuthority("deliver testenv Gitea CA")
		if err != nil {
			return err
		}
		leaf, err := ca.issue(certRequest{
			commonName: "127.0.0.1", dnsNames: []string{"localhost"},
			ips: []net.IP{net.IPv4(127, 0, 0, 1)}, server: true,
		})
		if err != nil {
			return err
		}
		certFile, keyFile := filepath.Join(g.dir, "cert.pem"), filepath.Join(g.dir, "key.pem")
		if err := os.WriteFile(certFile, leaf.certPEM, 0o600); err != nil {
			return fmt.Errorf("writing Gitea certificate: %w", err)
		}
		if err := os.WriteFile(keyFile, leaf.keyPEM, 0o600); err != nil {
			return fmt.Errorf("writing Gitea key: %w", err)
		}
		g.CACertPEM = ca.certPEM
		pool := x509.NewCertPool()
		pool.AddCert(ca.cert)
		transport.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		scheme = "https"
		tlsINI = "CERT_FILE = " + certFile + "\nKEY_FILE = " + keyFile + "\n"
	}
	g.client = &http.Client{Transport: transport, Timeout: 30 * time.Second}
	secrets := map[string]string{}
	for _, name := range []string{"SECRET_KEY", "INTERNAL_TOKEN", "JWT_SECRET"} {
		out, err := g.run(ctx, "generate", "secret", name)
		if err != nil {
			return err
		}
		secrets[name] = strings.TrimSpace(out)
	}
	password, err := randomToken(12)
	if err != nil {
		return err
	}
	g.Password = "pw-" + password
	for attempt := 1; ; attempt++ {
		port, err := o.pickPort()
		if err != nil {
			return err
		}
		g.URL = scheme + "://127.0.0.1:" + strconv.Itoa(port)
		g.APIURL = g.URL + "/api/v1"
		if err := os.WriteFile(g.iniPath(), []byte(giteaINI(g.dir, scheme, port, tlsINI, secrets)), 0o600); err != nil {
			return fmt.Errorf("writing app.ini: %w", err)
		}
		if attempt == 1 {
			// The port is not in the database: migrate and create the administrator once.
			if _, err := g.run(ctx, "migrate"); err != nil {
				return err
			}
			if _, err := g.run(ctx, "admin", "user", "create", "--admin", "--username", GiteaAdmin,
				"--password", g.Password, "--email", GiteaAdmin+"@example.invalid", "--must-change-password=false"); err != nil {
				return err
			}
		}
		err = g.startWeb(ctx, port)
		if err == nil {
			break
		}
		if !errors.Is(err, errPortTaken) || attempt == giteaStartAttempts {
			return err
		}
	}
	tok, err := g.CreateToken(ctx, GiteaAdmin, g.Password, "testenv-admin", "all")
	if err != nil {
		return err
	}
	g.Token = tok
	return nil
}

// errPortTaken: the web server could not bind its port.
var errPortTaken = errors.New("port taken")

// startWeb starts `gitea web` and waits for GET /api/v1/version to answer 200.
func (g *Gitea) startWeb(ctx context.Context, port int) error {
	logPath := filepath.Join(g.dir, "gitea.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("starting Gitea: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(g.Bin, "--config", g.iniPath(), "--work-path", g.dir, "web")
	cmd.Dir = g.dir
	cmd.Env = g.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = childSysProcAttr(true)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting gitea web: %w", err)
	}
	p := &component{name: "gitea", cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	g.proc = p
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, giteaStartTimeout)
		defer cancel()
	}
	bindErr := "127.0.0.1:" + strconv.Itoa(port) + ": bind: address already in use"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if done, _ := p.exited(); done {
			err := p.exitError()
			if strings.Contains(p.logTail(50), bindErr) {
				err = fmt.Errorf("%w: %v", errPortTaken, err)
			}
			g.proc = nil
			return err
		}
		// A failed bind does not make Gitea exit: it logs the error and idles.
		if strings.Contains(p.logTail(50), bindErr) {
			_ = p.stop(stopGrace)
			g.proc = nil
			return fmt.Errorf("%w: gitea web could not bind port %d", errPortTaken, port)
		}
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := httpGet(reqCtx, g.client, g.APIURL+"/version")
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			_ = p.stop(stopGrace)
			g.proc = nil
			return fmt.Errorf("waiting for gitea web on port %d: %w (last error: %v); last lines of its log:\n%s",
				port, context.Cause(ctx), lastErr, p.logTail(25))
		case <-tick.C:
		}
	}
}

func (g *Gitea) iniPath() string { return filepath.Join(g.dir, "custom", "conf", "app.ini") }

// env is the environment of every Gitea process: the test's, with HOME and TMPDIR inside
// Gitea's directory, and the consent to run as root (CI and developer machines run as root).
func (g *Gitea) env() []string {
	return childEnv(map[string]string{
		"HOME":            filepath.Join(g.dir, "home"),
		"TMPDIR":          filepath.Join(g.dir, "tmp"),
		"GITEA_WORK_DIR":  g.dir,
		"GITEA_CUSTOM":    filepath.Join(g.dir, "custom"),
		"XDG_CONFIG_HOME": filepath.Join(g.dir, "home", ".config"),
		"GITEA_I_AM_BEING_UNSAFE_RUNNING_AS_ROOT": "true",
		"GIT_CONFIG_NOSYSTEM":                     "1",
	}, func(k string) bool {
		// The test's git settings (GIT_DIR, GIT_CONFIG_*) must not reach Gitea's git.
		return strings.HasPrefix(k, "GIT_") || strings.HasPrefix(k, "GITEA_")
	})
}

// run runs a one-shot gitea command (migrate, admin, generate) and returns its standard output.
func (g *Gitea) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.Bin, append([]string{"--config", g.iniPath(), "--work-path", g.dir}, args...)...)
	cmd.Dir = g.dir
	cmd.Env = g.env()
	cmd.SysProcAttr = childSysProcAttr(false)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// Never echo a password given on the command line.
		what := strings.Join(args, " ")
		if len(args) > 1 && args[0] == "admin" {
			what = "admin " + args[1] + " " + args[2]
		}
		return "", fmt.Errorf("gitea %s: %w: %s", what, err, strings.TrimSpace(stderr.String()+"\n"+lastLines(stdout.String(), 10)))
	}
	return stdout.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// giteaPort picks a port that is free now, below the kernel's ephemeral range: a loopback client
// socket holds its ephemeral port, so a port in that range that refuses connections can still
// fail to bind (seen with other jobs busy on loopback). Binding can still race with another
// process; StartGitea retries on a new port then.
func giteaPort() (int, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				lo = n
			}
		}
	}
	for range 200 {
		p := 10000 + rand.IntN(lo-10000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		_ = ln.Close()
		return p, nil
	}
	return 0, errors.New("finding a free port for Gitea below the ephemeral range: none in 200 tries")
}

// giteaINI is Gitea's configuration: loopback only, sqlite, no SSH, mail, Actions, update checks
// or registration; every secret fixed in the file so that Gitea never rewrites it.
func giteaINI(dir, scheme string, port int, tlsINI string, secrets map[string]string) string {
	root := fmt.Sprintf("%s://127.0.0.1:%d/", scheme, port)
	return `APP_NAME = deliver testenv
RUN_MODE = prod
WORK_PATH = ` + dir + `
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = ` + scheme + `
` + tlsINI + `HTTP_ADDR = 127.0.0.1
HTTP_PORT = ` + strconv.Itoa(port) + `
ROOT_URL = ` + root + `
LOCAL_ROOT_URL = ` + root + `
DOMAIN = 127.0.0.1
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
DISABLE_ROUTER_LOG = true
APP_DATA_PATH = ` + filepath.Join(dir, "data") + `
GRACEFUL_RESTARTABLE = false
GRACEFUL_HAMMER_TIME = 3s

[database]
DB_TYPE = sqlite3
PATH = ` + filepath.Join(dir, "data", "gitea.db") + `
SQLITE_JOURNAL_MODE = WAL

[repository]
ROOT = ` + filepath.Join(dir, "repos") + `
DEFAULT_BRANCH = main

[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false

[security]
INSTALL_LOCK = true
SECRET_KEY = ` + secrets["SECRET_KEY"] + `
INTERNAL_TOKEN = ` + secrets["INTERNAL_TOKEN"] + `
PASSWORD_HASH_ALGO = pbkdf2

[oauth2]
JWT_SECRET = ` + secrets["JWT_SECRET"] + `

[service]
DISABLE_REGISTRATION = true
REQUIRE_SIGNIN_VIEW = false

[mailer]
ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[actions]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = console
LEVEL = Info
`
}

// GiteaAPIError is an API answer other than 2xx.
type GiteaAPIError struct {
	Method, Path string
	StatusCode   int
	Body         string
}

func (e *GiteaAPIError) Error() string {
	return fmt.Sprintf("gitea API %s %s: %d: %s", e.Method, e.Path, e.StatusCode, strings.TrimSpace(e.Body))
}

// Do calls the API as the administrator; see DoAs.
func (g *Gitea) Do(ctx context.Context, method, path string, in, out any) error {
	return g.DoAs(ctx, g.Token, method, path, in, out)
}

// DoAs calls the API with token (Authorization: token ...): method on APIURL+path, with in
// encoded as JSON (nil for no body) and the answer decoded into out (nil to drop it). An answer
// other than 2xx is a *GiteaAPIError.
func (g *Gitea) DoAs(ctx context.Context, token, method, path string, in, out any) error {
	return g.do(ctx, method, path, in, out, func(r *http.Request) {
		if token != "" {
			r.Header.Set("Authorization", "token "+token)
		}
	})
}

func (g *Gitea) do(ctx context.Context, method, path string, in, out any, auth func(*http.Request)) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.APIURL+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	auth(req)
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("gitea API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("gitea API %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return &GiteaAPIError{Method: method, Path: path, StatusCode: resp.StatusCode, Body: string(b)}
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("gitea API %s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

// CreateUser creates a user (not an administrator) with a random password, which it returns.
func (g *Gitea) CreateUser(ctx context.Context, name string) (password string, err error) {
	p, err := randomToken(12)
	if err != nil {
		return "", err
	}
	password = "pw-" + p
	err = g.Do(ctx, http.MethodPost, "/admin/users", map[string]any{
		"username": name, "email": name + "@example.invalid", "password": password,
		"must_change_password": false, "send_notify": false,
	}, nil)
	if err != nil {
		return "", fmt.Errorf("creating Gitea user %s: %w", name, err)
	}
	return password, nil
}

// CreateUserToken creates a user (see CreateUser) and returns an API token of theirs with the
// given scopes.
func (g *Gitea) CreateUserToken(ctx context.Context, name string, scopes ...string) (string, error) {
	pw, err := g.CreateUser(ctx, name)
	if err != nil {
		return "", err
	}
	return g.CreateToken(ctx, name, pw, name+"-token", scopes...)
}

// CreateToken creates an API token for user (authenticating with their password) with the given
// scopes, such as "write:repository" or "all", and returns it. Gitea shows a token only once.
func (g *Gitea) CreateToken(ctx context.Context, user, password, name string, scopes ...string) (string, error) {
	var out struct {
		SHA1 string `json:"sha1"`
	}
	err := g.do(ctx, http.MethodPost, "/users/"+url.PathEscape(user)+"/tokens",
		map[string]any{"name": name, "scopes": scopes}, &out,
		func(r *http.Request) { r.SetBasicAuth(user, password) })
	if err != nil {
		return "", fmt.Errorf("creating token %s of %s: %w", name, user, err)
	}
	if out.SHA1 == "" {
		return "", fmt.Errorf("creating token %s of %s: the answer holds no token", name, user)
	}
	return out.SHA1, nil
}

// RepoURL returns the clone URL of the administrator's repository name, without credentials.
func (g *Gitea) RepoURL(name string) string { return g.URL + "/" + GiteaAdmin + "/" + name + ".git" }

// AuthRepoURL returns the clone URL of the administrator's repository name with user:token in it,
// for git commands in tests.
func (g *Gitea) AuthRepoURL(name, user, token string) string {
	u, _ := url.Parse(g.RepoURL(name))
	u.User = url.UserPassword(user, token)
	return u.String()
}

// CreateRepo creates the private repository GiteaAdmin/name with default branch main, whose
// first commit holds every file under seedDir (an empty commit when seedDir is ""), pushed with
// the git CLI, and returns its clone URL (without credentials).
func (g *Gitea) CreateRepo(ctx context.Context, name, seedDir string) (string, error) {
	if err := checkRepoName(name); err != nil || strings.Contains(name, "/") {
		return "", fmt.Errorf("creating Gitea repository: invalid name %q", name)
	}
	err := g.Do(ctx, http.MethodPost, "/user/repos", map[string]any{
		"name": name, "private": true, "auto_init": false, "default_branch": "main",
	}, nil)
	if err != nil {
		return "", fmt.Errorf("creating Gitea repository %s: %w", name, err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(g.dir, "tmp"), "seed-")
	if err != nil {
		return "", fmt.Errorf("creating Gitea repository %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	work := seedDir
	if work == "" {
		work = filepath.Join(tmp, "empty")
		if err := os.Mkdir(work, 0o755); err != nil {
			return "", fmt.Errorf("creating Gitea repository %s: %w", name, err)
		}
	} else if work, err = filepath.Abs(work); err != nil {
		return "", fmt.Errorf("creating Gitea repository %s: %w", name, err)
	}
	env, err := g.gitEnv(tmp)
	if err != nil {
		return "", err
	}
	env = append(env, "GIT_DIR="+filepath.Join(tmp, "git"), "GIT_WORK_TREE="+work)
	var commit string
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=main", filepath.Join(tmp, "git")},
		{"add", "--all", "--force", "."},
		{"commit", "--quiet", "--allow-empty", "-m", "Initial commit"},
		{"rev-parse", "HEAD"},
		{"push", "--quiet", g.AuthRepoURL(name, GiteaAdmin, g.Token), "HEAD:refs/heads/main"},
	} {
		out, err := runGit(env, work, args...)
		if err != nil {
			return "", fmt.Errorf("creating Gitea repository %s: %w", name, redactToken(err, g.Token))
		}
		if args[0] == "rev-parse" {
			commit = out
		}
	}
	if err := g.waitBranch(ctx, name, "main", commit); err != nil {
		return "", fmt.Errorf("creating Gitea repository %s: %w", name, err)
	}
	return g.RepoURL(name), nil
}

// waitBranch waits until Gitea's API shows branch of repo at commit. Gitea records a push in its
// database asynchronously (the repository stays "empty" and the branch unknown for a moment).
func (g *Gitea) waitBranch(ctx context.Context, repo, branch, commit string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		head, err := g.BranchHead(ctx, repo, branch)
		if err == nil && head == commit {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for Gitea to show %s of %s at %s: %w (last: %q, %v)", branch, repo, commit, ctx.Err(), head, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// gitEnv is an environment for the git CLI isolated from the user's and the system's
// configuration, trusting the server's CA (WithGiteaTLS).
func (g *Gitea) gitEnv(tmp string) ([]string, error) {
	env := []string{
		"HOME=" + tmp, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull, "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=testenv", "GIT_AUTHOR_EMAIL=testenv@example.invalid",
		"GIT_COMMITTER_NAME=testenv", "GIT_COMMITTER_EMAIL=testenv@example.invalid",
	}
	if g.CACertPEM != nil {
		ca := filepath.Join(tmp, "ca.pem")
		if err := os.WriteFile(ca, g.CACertPEM, 0o600); err != nil {
			return nil, fmt.Errorf("writing the Gitea CA for git: %w", err)
		}
		env = append(env, "GIT_SSL_CAINFO="+ca)
	}
	return env, nil
}

func redactToken(err error, token string) error {
	if token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), token, "***"))
}

// AddCollaborator gives user a permission ("read", "write" or "admin") on the administrator's
// repository repo.
func (g *Gitea) AddCollaborator(ctx context.Context, repo, user, permission string) error {
	err := g.Do(ctx, http.MethodPut, "/repos/"+GiteaAdmin+"/"+repo+"/collaborators/"+url.PathEscape(user),
		map[string]any{"permission": permission}, nil)
	if err != nil {
		return fmt.Errorf("adding %s to %s: %w", user, repo, err)
	}
	return nil
}

// BranchProtection is a branch protection rule, as Gitea's API takes it (the fields tests use).
type BranchProtection struct {
	// Branch is the rule name: a branch name or a glob.
	Branch string `json:"rule_name"`
	// EnablePush allows direct pushes; false refuses every push, the administrator's included.
	EnablePush bool `json:"enable_push"`
	// EnablePushWhitelist with PushWhitelist allows direct pushes by those users only.
	EnablePushWhitelist bool     `json:"enable_push_whitelist"`
	PushWhitelist       []string `json:"push_whitelist_usernames,omitempty"`
	// RequiredApprovals gates merges (not pushes) on that many approving reviews.
	RequiredApprovals int `json:"required_approvals"`
	// EnableStatusCheck with StatusCheckContexts gates merges on those commit statuses.
	EnableStatusCheck   bool     `json:"enable_status_check"`
	StatusCheckContexts []string `json:"status_check_contexts,omitempty"`
	// BlockOnOutdatedBranch refuses merging a pull request whose base moved.
	BlockOnOutdatedBranch bool `json:"block_on_outdated_branch"`
}

// ProtectBranch adds a branch protection rule to the administrator's repository repo.
func (g *Gitea) ProtectBranch(ctx context.Context, repo string, p BranchProtection) error {
	if err := g.Do(ctx, http.MethodPost, "/repos/"+GiteaAdmin+"/"+repo+"/branch_protections", p, nil); err != nil {
		return fmt.Errorf("protecting %s of %s: %w", p.Branch, repo, err)
	}
	return nil
}

// BranchHead returns the commit SHA at the tip of branch in the administrator's repository repo.
func (g *Gitea) BranchHead(ctx context.Context, repo, branch string) (string, error) {
	var out struct {
		Commit struct {
			ID string `json:"id"`
		} `json:"commit"`
	}
	if err := g.Do(ctx, http.MethodGet, "/repos/"+GiteaAdmin+"/"+repo+"/branches/"+url.PathEscape(branch), nil, &out); err != nil {
		return "", fmt.Errorf("reading branch %s of %s: %w", branch, repo, err)
	}
	return out.Commit.ID, nil
}

// ReadFile returns the content of path in the commit at the tip of ref (a branch or SHA) of the
// administrator's repository repo.
func (g *Gitea) ReadFile(ctx context.Context, repo, ref, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		g.APIURL+"/repos/"+GiteaAdmin+"/"+repo+"/raw/"+path+"?ref="+url.QueryEscape(ref), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "token "+g.Token)
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading %s at %s of %s: %w", path, ref, repo, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading %s at %s of %s: %w", path, ref, repo, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &GiteaAPIError{Method: http.MethodGet, Path: "raw/" + path, StatusCode: resp.StatusCode, Body: string(b)}
	}
	return b, nil
}

// GiteaPull is the part of a pull request the tests look at.
type GiteaPull struct {
	Number         int    `json:"number"`
	Title          string `json:"title"`
	Body           string `json:"body"`
	State          string `json:"state"`
	Merged         bool   `json:"merged"`
	Mergeable      bool   `json:"mergeable"`
	MergeCommitSHA string `json:"merge_commit_sha"`
	HTMLURL        string `json:"html_url"`
	Head           struct {
		Ref string `json:"ref"`
		SHA string `json:"sha"`
	} `json:"head"`
	Base struct {
		Ref string `json:"ref"`
	} `json:"base"`
}

// Pulls lists the pull requests of the administrator's repository repo in state ("open",
// "closed" or "all"), newest first.
func (g *Gitea) Pulls(ctx context.Context, repo, state string) ([]GiteaPull, error) {
	var all []GiteaPull
	for page := 1; ; page++ {
		var batch []GiteaPull
		path := fmt.Sprintf("/repos/%s/%s/pulls?state=%s&limit=50&page=%d", GiteaAdmin, repo, url.QueryEscape(state), page)
		if err := g.Do(ctx, http.MethodGet, path, nil, &batch); err != nil {
			return nil, fmt.Errorf("listing pull requests of %s: %w", repo, err)
		}
		all = append(all, batch...)
		if len(batch) < 50 {
			return all, nil
		}
	}
}

// SetCommitStatus sets the commit status context of sha in the administrator's repository repo
// to state ("pending", "success", "failure" or "error"), as a CI system would.
func (g *Gitea) SetCommitStatus(ctx context.Context, repo, sha, statusContext, state string) error {
	err := g.Do(ctx, http.MethodPost, "/repos/"+GiteaAdmin+"/"+repo+"/statuses/"+sha,
		map[string]any{"state": state, "context": statusContext, "description": "set by the test"}, nil)
	if err != nil {
		return fmt.Errorf("setting status %s of %s in %s: %w", statusContext, sha, repo, err)
	}
	return nil
}

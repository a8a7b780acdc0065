package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// defaultRequestTimeout bounds each request unless the kubeconfig sets a
// timeout: a hung API server must not hang the step.
const defaultRequestTimeout = time.Minute

// Options say how to reach the cluster.
type Options struct {
	// Kubeconfig is the path of a kubeconfig file (--kubeconfig).
	Kubeconfig string
	// KubeconfigData is the content of a kubeconfig, e.g. one passed as a CI
	// secret. It wins over Kubeconfig. It is parsed in memory and never
	// written anywhere; errors never quote it.
	KubeconfigData []byte
	// Context is the kubeconfig context to use (--kube-context); empty
	// means the kubeconfig's current-context.
	Context string
	// Getenv reads KUBECONFIG, HOME and the in-cluster variables
	// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT; nil means
	// os.Getenv. Nothing else reads the process's environment.
	Getenv func(string) string
	// Warn receives the API server's warnings (deprecated APIs, for
	// example); nil drops them.
	Warn func(message string)
}

// Client talks to one cluster. It is safe for concurrent use. Its discovery
// information is fetched once, on first use, and shared by all its methods.
type Client struct {
	config  *rest.Config
	source  string // where the configuration came from, for messages; never contents
	dynamic dynamic.Interface
	disco   discovery.CachedDiscoveryInterfaceWithContext
	mapper  *restmapper.DeferredDiscoveryRESTMapper
}

// Connect builds a Client. The configuration comes from the first of:
// opts.KubeconfigData, opts.Kubeconfig, $KUBECONFIG (a list of paths, merged
// as kubectl does), the in-cluster service account (only when opts.Context is
// empty), and ~/.kube/config. opts.Context selects the context; if the
// kubeconfig has no such context, the error names it and lists the available
// ones. Connect makes no request: an unreachable cluster shows up in the first
// call that needs it. Errors wrap ErrInvalid.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg, source, err := loadConfig(opts, getenv)
	if err != nil {
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		// No client-side throttling: deliver bounds its own concurrency (applyWorkers), and
		// the API server's priority and fairness protects it. client-go's default limiter
		// (5 QPS, or kubectl's 50) made a 1 000-object apply take a minute.
		cfg.QPS = -1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultRequestTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "deliver " + rest.DefaultKubernetesUserAgent()
	}
	cfg.WarningHandler = warningHandler(opts.Warn)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating discovery client for %s: %w: %w", source, ErrInvalid, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating dynamic client for %s: %w: %w", source, ErrInvalid, err)
	}
	cached := memory.NewMemCacheClientWithContext(dc)
	return &Client{
		config:  cfg,
		source:  source,
		dynamic: dyn,
		disco:   cached,
		mapper:  restmapper.NewDeferredDiscoveryRESTMapperWithContext(cached),
	}, nil
}

// Host returns the API server's URL.
func (c *Client) Host() string { return c.config.Host }

// ServerVersion asks the API server for its version, e.g. "v1.37.2". It is
// a cheap way to check that the cluster is reachable and the credentials
// are accepted.
func (c *Client) ServerVersion(ctx context.Context) (string, error) {
	ctx = quiet(ctx)
	raw, err := c.disco.RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", classify(ctx, "getting server version from "+c.config.Host, err)
	}
	var info version.Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return "", fmt.Errorf("decoding server version from %s: %w: %w", c.config.Host, ErrUnreachable, err)
	}
	return info.GitVersion, nil
}

// Check reads the API server's discovery (its groups and resources), which every apply needs
// and which the client caches for it: one round trip that proves the cluster answers and
// accepts the credentials (discovery is open only to authenticated users by default).
// Groups whose discovery fails, such as an aggregated API that is down, are not an error
// here; the apply reports them if it needs them. Errors wrap ErrUnreachable, ErrUnauthorized
// or ErrInvalid, like the apply's.
func (c *Client) Check(ctx context.Context) error {
	ctx = quiet(ctx)
	_, _, err := c.disco.ServerGroupsAndResourcesWithContext(ctx)
	if err == nil || discovery.IsGroupDiscoveryFailedError(err) {
		return nil
	}
	what := "reading the API server's discovery from " + c.config.Host
	var status apierrors.APIStatus
	if errors.As(err, &status) && !apierrors.IsUnauthorized(err) && !apierrors.IsForbidden(err) {
		// Any other answer (404, 500, ...) means the URL does not lead to a working API
		// server; nothing was applied, so it is not an apply failure.
		return fmt.Errorf("%s: %w: it does not answer as a Kubernetes API server: %w", what, ErrUnreachable, err)
	}
	return classify(ctx, what, err)
}

// loadConfig finds the kubeconfig (see Connect) and returns the client
// configuration of its selected context, and a description of where it came
// from.
func loadConfig(opts Options, getenv func(string) string) (*rest.Config, string, error) {
	raw, source, err := findConfig(opts, getenv)
	switch {
	case err != nil:
		return nil, "", err
	case raw == nil:
		cfg, err := inClusterConfig(getenv)
		if err != nil {
			return nil, "", fmt.Errorf("loading in-cluster configuration: %w: %w", ErrInvalid, err)
		}
		return cfg, source, nil
	}
	return fromRaw(raw, opts.Context, source)
}

// findConfig finds and loads the kubeconfig as Connect does, and says where it came from; a
// nil config (and no error) means the in-cluster service account.
func findConfig(opts Options, getenv func(string) string) (*clientcmdapi.Config, string, error) {
	switch {
	case len(opts.KubeconfigData) > 0:
		const source = "kubeconfig data"
		raw, err := clientcmd.Load(opts.KubeconfigData)
		if err != nil {
			return nil, "", fmt.Errorf("parsing %s: %w: not a valid kubeconfig%s", source, ErrInvalid, safeDetail(err))
		}
		return raw, source, nil
	case opts.Kubeconfig != "":
		return fromFiles(&clientcmd.ClientConfigLoadingRules{ExplicitPath: opts.Kubeconfig}, "kubeconfig "+opts.Kubeconfig)
	case getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		v := getenv(clientcmd.RecommendedConfigPathEnvVar)
		return fromFiles(&clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(v)}, "$KUBECONFIG ("+v+")")
	case opts.Context == "" && getenv("KUBERNETES_SERVICE_HOST") != "" && getenv("KUBERNETES_SERVICE_PORT") != "":
		return nil, "in-cluster service account", nil
	}
	home := getenv("HOME")
	if home == "" {
		return nil, "", fmt.Errorf("finding a kubeconfig: %w: none given (--kubeconfig, $KUBECONFIG), not in a cluster, and no home directory ($HOME)", ErrInvalid)
	}
	path := filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)
	if _, err := os.Stat(path); err != nil {
		return nil, "", fmt.Errorf("finding a kubeconfig: %w: none given (--kubeconfig, $KUBECONFIG), not in a cluster, and %s: %w", ErrInvalid, path, err)
	}
	return fromFiles(&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, "kubeconfig "+path)
}

// Credentials returns the secrets of the kubeconfig Connect would use with opts, for a caller
// to keep out of its output: the tokens and passwords of every user in it, their client keys
// (PEM, and base64 as a kubeconfig holds them), the contents of the token and key files they
// name, the tokens and secrets of auth providers, and the values of exec plugins' environment
// variables whose names say they hold one (…TOKEN, …SECRET…, …KEY…; see secretSetting); or the
// in-cluster service account's token. Kubeconfig data that does not parse is returned whole:
// what it holds is unknown. It returns nothing when there is no kubeconfig to read; Connect
// reports that.
func Credentials(opts Options) []string {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	raw, _, err := findConfig(opts, getenv)
	switch {
	case err != nil && len(opts.KubeconfigData) > 0:
		return []string{string(opts.KubeconfigData)}
	case err != nil:
		return nil
	case raw == nil:
		return fileContents(inClusterTokenFile)
	}
	var out []string
	for _, ai := range raw.AuthInfos {
		out = append(out, ai.Token, ai.Password, string(ai.ClientKeyData), base64.StdEncoding.EncodeToString(ai.ClientKeyData))
		out = append(out, fileContents(ai.TokenFile, ai.ClientKey)...)
		if ai.AuthProvider != nil {
			for k, v := range ai.AuthProvider.Config {
				if secretSetting(k, v) {
					out = append(out, v)
				}
			}
		}
		if ai.Exec != nil {
			for _, e := range ai.Exec.Env {
				if secretSetting(e.Name, e.Value) {
					out = append(out, e.Value)
				}
			}
		}
	}
	return out
}

// secretSetting reports whether a setting (an auth provider's config entry, an exec plugin's
// environment variable) holds a secret: its name says so (an "access-token", a VAULT_TOKEN, an
// AWS_SECRET_ACCESS_KEY, a DB_PASS), and its value could be one. Masking a value hides it
// everywhere in the job's log, so names that point at a secret without holding one
// (KMS_KEY_ID, SSH_KEY_PATH, TOKEN_TYPE) and values too short or too plain to be one ("true",
// "json", "Bearer") are left alone.
func secretSetting(name, value string) bool {
	if len(value) < minSecretLen {
		return false
	}
	switch strings.ToLower(value) {
	case "true", "false", "yes", "no", "none", "null":
		return false
	}
	n := strings.ToLower(strings.NewReplacer("-", "_", ".", "_").Replace(name))
	for _, suffix := range []string{"_id", "_file", "_path", "_dir", "_url", "_type", "_region", "_format", "_name"} {
		if strings.HasSuffix(n, suffix) {
			return false
		}
	}
	for _, s := range []string{"token", "secret", "password", "passwd", "passphrase", "key", "credential"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	for _, suffix := range []string{"_pass", "_pwd", "_pat"} {
		if strings.HasSuffix(n, suffix) {
			return true
		}
	}
	return false
}

// minSecretLen is the shortest value secretSetting takes for a secret.
const minSecretLen = 8

// fileContents reads the files named (an empty name, or a file that cannot be read, gives
// nothing).
func fileContents(paths ...string) []string {
	var out []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		if data, err := os.ReadFile(p); err == nil {
			out = append(out, string(data))
		}
	}
	return out
}

// The service account files of a pod, where rest.InClusterConfig reads them.
const (
	inClusterTokenFile  = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	inClusterRootCAFile = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// inClusterConfig is rest.InClusterConfig with the API server's address read through getenv
// (rest.InClusterConfig reads the process's environment).
func inClusterConfig(getenv func(string) string) (*rest.Config, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	token, err := os.ReadFile(inClusterTokenFile)
	if err != nil {
		return nil, err
	}
	cfg := &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, port),
		BearerToken:     string(token),
		BearerTokenFile: inClusterTokenFile,
	}
	if _, err := os.Stat(inClusterRootCAFile); err == nil {
		cfg.TLSClientConfig.CAFile = inClusterRootCAFile // without it, the system's roots, as client-go does
	}
	return cfg, nil
}

// safeDetail returns ": " and the message of a kubeconfig decoding error if
// it cannot quote any of the kubeconfig's content (the YAML and JSON
// decoders quote values with backquotes or double quotes), else "".
func safeDetail(err error) string {
	msg := err.Error()
	if strings.ContainsAny(msg, "`\"'") || len(msg) > 200 {
		return ""
	}
	return ": " + msg
}

// fromFiles loads the kubeconfig files of rules, resolving relative paths
// in them against their directories.
func fromFiles(rules *clientcmd.ClientConfigLoadingRules, source string) (*clientcmdapi.Config, string, error) {
	raw, err := rules.Load()
	if err != nil {
		return nil, "", fmt.Errorf("loading %s: %w: %w", source, ErrInvalid, err)
	}
	return raw, source, nil
}

// fromRaw selects context (or the current context) in raw.
func fromRaw(raw *clientcmdapi.Config, context, source string) (*rest.Config, string, error) {
	name := context
	if name == "" {
		name = raw.CurrentContext
	}
	available := make([]string, 0, len(raw.Contexts))
	for n := range raw.Contexts {
		available = append(available, n)
	}
	sort.Strings(available)
	list := strings.Join(available, ", ")
	if len(available) == 0 {
		list = "none"
	}
	switch {
	case name == "":
		return nil, "", fmt.Errorf("loading %s: %w: no current-context and no --kube-context given (available contexts: %s)", source, ErrInvalid, list)
	case raw.Contexts[name] == nil:
		return nil, "", fmt.Errorf("loading %s: %w: kube context %q not found (available contexts: %s)", source, ErrInvalid, name, list)
	}
	cfg, err := clientcmd.NewNonInteractiveClientConfig(*raw, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("loading context %q of %s: %w: %w", name, source, ErrInvalid, err)
	}
	return cfg, fmt.Sprintf("context %q of %s", name, source), nil
}

// warningHandler passes API warnings to warn, each distinct text once, or drops them.
func warningHandler(warn func(string)) rest.WarningHandler {
	if warn == nil {
		return rest.NoWarnings{}
	}
	return &warnOnce{warn: warn, seen: map[string]bool{}}
}

// warnOnce is a rest.WarningHandler calling warn once per distinct warning: the API server
// repeats a deprecation warning on every request to the deprecated API.
type warnOnce struct {
	warn func(string)
	mu   sync.Mutex
	seen map[string]bool
}

// HandleWarningHeader implements rest.WarningHandler; it passes on warnings
// with code 299 (the only code the API server sends).
func (w *warnOnce) HandleWarningHeader(code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	first := !w.seen[text]
	w.seen[text] = true
	w.mu.Unlock()
	if first {
		w.warn(text)
	}
}

// mapping returns how to reach objects of gk (in version, if given).
func (c *Client) mapping(ctx context.Context, gk schema.GroupKind, version string) (*meta.RESTMapping, error) {
	var versions []string
	if version != "" {
		versions = []string{version}
	}
	return c.mapper.RESTMappingWithContext(ctx, gk, versions...)
}

// quiet returns ctx with a logger that discards everything, unless ctx
// already carries a logger: client-go reports some errors (discovery
// failures, client-side throttling) through the context's logger, which
// defaults to klog's global one on standard error. This package reports
// through its return values only.
func quiet(ctx context.Context) context.Context {
	if _, err := logr.FromContext(ctx); err == nil {
		return ctx
	}
	return logr.NewContext(ctx, logr.Discard())
}

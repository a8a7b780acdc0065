// flags.go owns the flags several commands share and their binding into the packages'
// options (config repo, registry, cluster, trigger, commit author).

package step

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/cluster"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/registry"
)

// Flag names shared by several commands.
const (
	flagConfigRepo    = "config-repo"
	flagBranch        = "branch"
	flagEnv           = "env"
	flagPathTemplate  = "path-template"
	flagImage         = "image"
	flagGitUsername   = "git-username"
	flagGitToken      = "git-token"
	flagSSHKey        = "ssh-key"
	flagSSHKeyFile    = "ssh-key-file"
	flagSSHKnownHosts = "ssh-known-hosts"
	flagSSHHostKey    = "ssh-host-key"
	flagGitCAFile     = "git-ca-file"
	flagGitInsecure   = "git-insecure-skip-tls-verify"
	flagRegUser       = "registry-username"
	flagRegPassword   = "registry-password"
	flagRegInsecure   = "insecure-registry"
	flagRegCAFile     = "registry-ca-file"
	flagRegTimeout    = "registry-timeout"
	flagPushAttempts  = "push-attempts"
	flagPushTimeout   = "push-timeout"
	flagAuthorName    = "author-name"
	flagAuthorEmail   = "author-email"
	flagCommitterName = "committer-name"
	flagCommitterMail = "committer-email"
	flagSigningKey    = "signing-key"
	flagSigningFile   = "signing-key-file"
	flagSigningPass   = "signing-key-passphrase"
	flagTrigger       = "trigger"
	flagDigestPin     = "digest-pin"
	flagNoApply       = "no-apply"
	flagDryRun        = "dry-run"
	flagKubeconfig    = "kubeconfig"
	flagKubeconfigDat = "kubeconfig-data"
	flagKubeContext   = "kube-context"
	flagNamespace     = "namespace"
	flagPrune         = "prune"
	flagWait          = "wait"
	flagTimeout       = "timeout"
	flagForceConfl    = "force-conflicts"
	flagEnvURL        = "env-url"
	flagForce         = "force"
	flagReason        = "reason"
	flagOnFailure     = "on-failure"
)

// releaseFlags are the flags of commands that change an environment's images.
func releaseFlags() []cli.Flag {
	const cat = "Release"
	return append([]cli.Flag{
		&cli.BoolFlag{Name: flagForce, Category: cat, EnvVars: env(flagForce), Usage: "override a lock on the image (manual runs only; recorded in the commit)"},
		&cli.StringFlag{Name: flagReason, Category: cat, EnvVars: env(flagReason), Usage: "why: recorded in the commit"},
		&cli.StringFlag{Name: flagOnFailure, Category: cat, EnvVars: env(flagOnFailure), Value: onFailureRevert, Usage: "when the rollout fails: revert (push a revert of this change, apply and wait for the previous version) or keep"},
	}, pullRequestFlags()...)
}

func env(name string) []string {
	return []string{"DELIVER_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

// configRepoFlags are the flags that reach the config repo.
func configRepoFlags() []cli.Flag {
	const cat, sign = "Config repo", "Commit signing"
	return []cli.Flag{
		&cli.StringFlag{Name: flagConfigRepo, Category: cat, EnvVars: env(flagConfigRepo), Usage: "URL of the GitOps config repo: https://, http://, ssh:// or user@host:path (no local paths)"},
		&cli.StringFlag{Name: flagBranch, Category: cat, EnvVars: env(flagBranch), Value: "main", Usage: "branch of the config repo to update"},
		&cli.StringFlag{Name: flagPathTemplate, Category: cat, EnvVars: env(flagPathTemplate), Value: "overlays/{env}", Usage: "overlay directory of an environment in the config repo; must hold {env}, which is replaced by the environment name"},
		&cli.StringFlag{Name: flagGitUsername, Category: cat, EnvVars: env(flagGitUsername), Usage: "username for HTTPS (default x-access-token, which GitHub and GitLab tokens accept)"},
		&cli.StringFlag{Name: flagGitToken, Category: cat, EnvVars: env(flagGitToken), Usage: "token or password for HTTPS (GitLab project/deploy token, GitHub App or fine-grained token)"},
		&cli.StringFlag{Name: flagSSHKey, Category: cat, EnvVars: env(flagSSHKey), Usage: "SSH private key (PEM content) for ssh:// or git@ URLs (a deploy key)"},
		&cli.StringFlag{Name: flagSSHKeyFile, Category: cat, EnvVars: env(flagSSHKeyFile), Usage: "file holding the SSH private key"},
		&cli.StringFlag{Name: flagSSHKnownHosts, Category: cat, EnvVars: env(flagSSHKnownHosts), Usage: "known_hosts file to check the SSH server against (default ~/.ssh/known_hosts)"},
		&cli.StringFlag{Name: flagSSHHostKey, Category: cat, EnvVars: env(flagSSHHostKey), Usage: "pin the SSH server's host key (\"ssh-ed25519 AAAA...\")"},
		&cli.StringFlag{Name: flagGitCAFile, Category: cat, EnvVars: env(flagGitCAFile), Usage: "PEM CA bundle to trust for a self-hosted git server"},
		&cli.BoolFlag{Name: flagGitInsecure, Category: cat, EnvVars: env(flagGitInsecure), Usage: "do not verify the git server's TLS certificate (unsafe; warns)"},
		&cli.IntFlag{Name: flagPushAttempts, Category: cat, EnvVars: env(flagPushAttempts), Value: 60, Usage: "push attempts when concurrent pipelines push first (each lost race means another pipeline landed)"},
		&cli.DurationFlag{Name: flagPushTimeout, Category: cat, EnvVars: env(flagPushTimeout), Value: 2 * time.Minute, Usage: "time limit for the whole commit-and-push, all attempts included"},
		&cli.StringFlag{Name: flagAuthorName, Category: cat, EnvVars: env(flagAuthorName), Usage: "commit author name (default: the CI user, else \"deliver\")"},
		&cli.StringFlag{Name: flagAuthorEmail, Category: cat, EnvVars: env(flagAuthorEmail), Usage: "commit author e-mail (default: the CI user's)"},
		&cli.StringFlag{Name: flagTrigger, Category: cat, EnvVars: env(flagTrigger), Usage: "manual or automated (default: from CI_PIPELINE_SOURCE / GITHUB_EVENT_NAME; outside CI, manual)"},
		&cli.StringFlag{Name: flagCommitterName, Category: sign, EnvVars: env(flagCommitterName), Usage: "commit committer name (default: the OpenPGP signing key's, else the author's)"},
		&cli.StringFlag{Name: flagCommitterMail, Category: sign, EnvVars: env(flagCommitterMail), Usage: "commit committer e-mail; forges show signed commits as verified when it is a verified e-mail of the account that owns the signing key (default: the OpenPGP signing key's, else the author's)"},
		&cli.StringFlag{Name: flagSigningKey, Category: sign, EnvVars: env(flagSigningKey), Usage: "sign every commit with this private key (content, a CI secret): an SSH key (ed25519, ECDSA, RSA) or an armored OpenPGP secret key"},
		&cli.StringFlag{Name: flagSigningFile, Category: sign, EnvVars: env(flagSigningFile), Usage: "file holding the signing key"},
		&cli.StringFlag{Name: flagSigningPass, Category: sign, EnvVars: env(flagSigningPass), Usage: "passphrase of the signing key (a CI secret)"},
	}
}

// registryFlags are the flags that reach the image registry.
func registryFlags() []cli.Flag {
	const cat = "Registry"
	return []cli.Flag{
		&cli.StringFlag{Name: flagRegUser, Category: cat, EnvVars: env(flagRegUser), Usage: "registry username (default: CI_REGISTRY_USER for CI_REGISTRY, GITHUB_TOKEN for ghcr.io, then the docker config)"},
		&cli.StringFlag{Name: flagRegPassword, Category: cat, EnvVars: env(flagRegPassword), Usage: "registry password or token"},
		&cli.StringSliceFlag{Name: flagRegInsecure, Category: cat, EnvVars: env(flagRegInsecure), Usage: "registry HOST[:PORT] reached over plain HTTP (repeatable)"},
		&cli.StringFlag{Name: flagRegCAFile, Category: cat, EnvVars: env(flagRegCAFile), Usage: "PEM CA bundle to trust for the registry"},
		&cli.DurationFlag{Name: flagRegTimeout, Category: cat, EnvVars: env(flagRegTimeout), Value: 60 * time.Second, Usage: "time limit for checking one image"},
	}
}

// clusterFlags are the flags that reach the cluster.
func clusterFlags() []cli.Flag {
	const cat = "Cluster"
	return append([]cli.Flag{
		&cli.StringFlag{Name: flagKubeconfig, Category: cat, EnvVars: env(flagKubeconfig), Usage: "kubeconfig file (default: KUBECONFIG, in-cluster, ~/.kube/config)"},
		&cli.StringFlag{Name: flagKubeconfigDat, Category: cat, EnvVars: env(flagKubeconfigDat), Usage: "kubeconfig content (a CI secret); wins over --kubeconfig"},
		&cli.StringFlag{Name: flagKubeContext, Category: cat, EnvVars: env(flagKubeContext), Usage: "kubeconfig context (GitLab agent: group/project:agent)"},
		&cli.StringFlag{Name: flagNamespace, Category: cat, EnvVars: env(flagNamespace), Usage: "namespace for objects the overlay leaves without one (default: the overlay's own namespace, else default)"},
		&cli.BoolFlag{Name: flagPrune, Category: cat, EnvVars: env(flagPrune), Usage: "delete objects deliver applied before that are no longer in the overlay (ApplySet)"},
		&cli.BoolFlag{Name: flagWait, Category: cat, EnvVars: env(flagWait), Value: true, Usage: "wait until every applied object is ready"},
		&cli.DurationFlag{Name: flagTimeout, Category: cat, EnvVars: env(flagTimeout), Value: 5 * time.Minute, Usage: "time limit for each step in the cluster: the check, the apply (or diff) and then the rollout wait (through Flux: for Flux to fetch, apply and roll out)"},
		&cli.BoolFlag{Name: flagForceConfl, Category: cat, EnvVars: env(flagForceConfl), Usage: "take fields owned by other field managers"},
	}, handOffFlags()...)
}

// validateEnvName refuses environment names that could reach outside the overlays directory
// or break a commit message.
func validateEnvName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("--%s: no environment given", flagEnv)
	case len(name) > 63:
		return fmt.Errorf("--%s %q: longer than 63 characters", flagEnv, name)
	case name == "." || name == ".." || strings.Contains(name, ".."):
		return fmt.Errorf("--%s %q: must not contain \"..\"", flagEnv, name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("--%s %q: only letters, digits, '-', '_' and '.' are allowed (found %q)", flagEnv, name, c)
		}
	}
	return nil
}

// overlayPath renders --path-template for env and checks it stays a relative path inside the
// repo. The template must hold {env}: without it every environment would edit, and apply, the
// same overlay while policy and the commit's record name the one asked for.
func overlayPath(template, envName string) (string, error) {
	if !strings.Contains(template, "{env}") {
		return "", fmt.Errorf("--%s %q: has no {env}, so every environment would use the same overlay (e.g. overlays/{env})", flagPathTemplate, template)
	}
	p := strings.ReplaceAll(template, "{env}", envName)
	if p == "" || strings.ContainsAny(p, "\x00\n\r") {
		return "", fmt.Errorf("--%s %q: not a usable path", flagPathTemplate, template)
	}
	clean := path.Clean(strings.ReplaceAll(p, "\\", "/"))
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("--%s %q: the overlay path %q must stay inside the config repo", flagPathTemplate, template, p)
	}
	return clean, nil
}

// scpLike is the scp-like form of an SSH URL git accepts, user@host:path (host a name or an
// IPv4 address; the path not starting with another ':', as git's ext:: transport does).
var scpLike = regexp.MustCompile(`^[^@/:\s]+@[A-Za-z0-9.-]+:[^:]`)

// validateRepoURL accepts the config repo URLs deliver supports: https://, http:// and ssh://
// with a host, and scp-like user@host:path. Anything else is refused before it is used: other
// transports (ext::, which runs a command, git://, which is neither authenticated nor
// encrypted, file://) and local paths (which go-git would serve by running git-upload-pack on
// this machine). The message names the scheme, never the whole URL (it may hold a password).
func validateRepoURL(raw string) error {
	scheme, _, hasScheme := strings.Cut(raw, "://")
	if t := strings.Index(raw, "::"); t >= 0 && (!hasScheme || t < len(scheme)) {
		return fmt.Errorf("--%s: unsupported transport %s::; use https://, http://, ssh:// or user@host:path", flagConfigRepo, raw[:t])
	}
	if hasScheme {
		switch strings.ToLower(scheme) {
		case "https", "http", "ssh":
		default:
			return fmt.Errorf("--%s: unsupported scheme %s://; use https://, http://, ssh:// or user@host:path", flagConfigRepo, scheme)
		}
	}
	if i := strings.IndexFunc(raw, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }); i >= 0 {
		return fmt.Errorf("--%s: the URL holds a space or control character (%q at byte %d)", flagConfigRepo, raw[i:i+1], i)
	}
	switch {
	case hasScheme:
		if u, err := url.Parse(raw); err != nil || u.Host == "" {
			return fmt.Errorf("--%s: not a usable %s:// URL (want %s://host/path)", flagConfigRepo, scheme, strings.ToLower(scheme))
		}
		return nil
	case scpLike.MatchString(raw):
		return nil
	case strings.Contains(raw, "@"): // perhaps user:password@...: not repeated
		return fmt.Errorf("--%s: not an https://, http://, ssh:// or user@host:path URL", flagConfigRepo)
	}
	return fmt.Errorf("--%s %q: not an https://, http://, ssh:// or user@host:path URL (local paths are not supported)", flagConfigRepo, raw)
}

// validateBranch refuses --branch values git refuses as branch names (git check-ref-format
// --branch: "..", spaces, control characters, ~ ^ : ? * [ \, "@{", a leading "-", a part
// starting with "." or ending in ".lock", ...), before anything is contacted.
func validateBranch(name string) error {
	if name == "" {
		return fmt.Errorf("--%s: no branch given", flagBranch)
	}
	if err := configrepo.ValidateBranch(name); err != nil {
		return fmt.Errorf("--%s %q: not a valid git branch name (git refuses \"..\", spaces, control characters, ~ ^ : ? * [ \\, \"@{\", a leading \"-\", a part starting with \".\" or ending in \".lock\")", flagBranch, name)
	}
	return nil
}

// envURL reads --env-url: empty, or an absolute http(s) URL. It goes to the CI outputs and the
// dotenv report, one line each, so a control character (a newline) is refused up front, not
// after the push.
func envURL(c *cli.Context) (string, error) {
	v := c.String(flagEnvURL)
	if v == "" {
		return "", nil
	}
	if i := strings.IndexFunc(v, unicode.IsControl); i >= 0 {
		return "", usage(fmt.Errorf("--%s %q: holds a control character at byte %d", flagEnvURL, v, i))
	}
	if u, err := url.Parse(v); err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", usage(fmt.Errorf("--%s %q: want an absolute http:// or https:// URL", flagEnvURL, v))
	}
	return v, nil
}

// gitAuth reads the config-repo credentials (registerSecrets masked them before the command
// started).
func (r *runner) gitAuth(c *cli.Context) (configrepo.Auth, error) {
	a := configrepo.Auth{
		Username:        c.String(flagGitUsername),
		Password:        c.String(flagGitToken),
		KnownHosts:      r.path(c.String(flagSSHKnownHosts)),
		HostKey:         c.String(flagSSHHostKey),
		InsecureSkipTLS: c.Bool(flagGitInsecure),
		Getenv:          r.getenv,
	}
	if key := c.String(flagSSHKey); key != "" {
		a.SSHKey = []byte(key)
	}
	if f := c.String(flagSSHKeyFile); f != "" {
		key, err := os.ReadFile(r.path(f))
		if err != nil {
			return a, usage(fmt.Errorf("--%s: %w", flagSSHKeyFile, err))
		}
		a.SSHKey = key
	}
	if f := c.String(flagGitCAFile); f != "" {
		ca, err := os.ReadFile(r.path(f))
		if err != nil {
			return a, usage(fmt.Errorf("--%s: %w", flagGitCAFile, err))
		}
		a.CABundle = ca
	}
	if a.InsecureSkipTLS {
		r.rep.Warnf("--%s is set: the config repo's TLS certificate is not verified", flagGitInsecure)
	}
	return a, nil
}

// configRepoOptions builds the configrepo options of a command.
func (r *runner) configRepoOptions(c *cli.Context) (configrepo.Options, error) {
	if c.String(flagConfigRepo) == "" {
		return configrepo.Options{}, usage(fmt.Errorf("--%s (or DELIVER_CONFIG_REPO) is required", flagConfigRepo))
	}
	if err := validateRepoURL(c.String(flagConfigRepo)); err != nil {
		return configrepo.Options{}, usage(err)
	}
	if err := validateBranch(c.String(flagBranch)); err != nil {
		return configrepo.Options{}, usage(err)
	}
	if c.Int(flagPushAttempts) < 1 {
		return configrepo.Options{}, usage(fmt.Errorf("--%s must be at least 1", flagPushAttempts))
	}
	if c.Duration(flagPushTimeout) <= 0 {
		return configrepo.Options{}, usage(fmt.Errorf("--%s must be positive", flagPushTimeout))
	}
	auth, err := r.gitAuth(c)
	if err != nil {
		return configrepo.Options{}, err
	}
	opts := configrepo.Options{
		URL:         c.String(flagConfigRepo),
		Branch:      c.String(flagBranch),
		Auth:        auth,
		TempDir:     r.getenv("TMPDIR"),
		Logf:        r.rep.Logf,
		MaxAttempts: c.Int(flagPushAttempts),
		Timeout:     c.Duration(flagPushTimeout),
	}
	if err := r.commitSigning(c, &opts); err != nil {
		return configrepo.Options{}, err
	}
	return opts, nil
}

// registryClient builds the registry client of a command.
func (r *runner) registryClient(c *cli.Context) (*registry.Client, error) {
	opts := registry.Options{
		Username: c.String(flagRegUser),
		Password: c.String(flagRegPassword),
		Insecure: splitList(c.StringSlice(flagRegInsecure)),
		Getenv:   r.getenv,
		Timeout:  c.Duration(flagRegTimeout),
	}
	if f := c.String(flagRegCAFile); f != "" {
		pem, err := os.ReadFile(r.path(f))
		if err != nil {
			return nil, usage(fmt.Errorf("--%s: %w", flagRegCAFile, err))
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usage(fmt.Errorf("--%s %s: no PEM certificates found", flagRegCAFile, f))
		}
		opts.CAs = pool
	}
	return registry.New(opts), nil
}

// clusterOptions builds the cluster connection options of a command.
func (r *runner) clusterOptions(c *cli.Context) cluster.Options {
	o := cluster.Options{
		Kubeconfig: r.path(c.String(flagKubeconfig)),
		Context:    c.String(flagKubeContext),
		Getenv:     r.getenv,
		// The API server's warnings: deprecated APIs, admission policies in Warn mode.
		Warn: func(msg string) { r.rep.Warnf("the cluster warns: %s", msg) },
	}
	if d := c.String(flagKubeconfigDat); d != "" {
		o.KubeconfigData = []byte(d) // its credentials are registered as secrets by registerSecrets
	}
	return o
}

// trigger resolves --trigger against the CI context.
func (r *runner) trigger(c *cli.Context) (ci.Trigger, string, error) {
	if s := c.String(flagTrigger); s != "" {
		t, ok := ci.ParseTrigger(s)
		if !ok {
			return "", "", usage(fmt.Errorf("--%s %q: want manual or automated", flagTrigger, s))
		}
		return t, r.ci.Event, nil
	}
	return r.ci.Trigger, r.ci.Event, nil
}

// author is the commit author: flags, then the CI user, then "deliver".
func (r *runner) author(c *cli.Context) configrepo.Signature {
	name, email := c.String(flagAuthorName), c.String(flagAuthorEmail)
	if name == "" {
		name = r.ci.Actor
	}
	if email == "" {
		email = r.ci.ActorEmail
	}
	if name == "" {
		name = "deliver"
	}
	if email == "" {
		email = "deliver@localhost"
	}
	return configrepo.Signature{Name: name, Email: email, When: time.Now()}
}

var errNoImages = errors.New("no image given")

// flagValueRE matches the Go flag package's report of a value its flag cannot parse, which
// names neither the reason nor what the flag takes ("parse error", "value out of range"); the
// value is quoted as by %q.
var flagValueRE = regexp.MustCompile(`^invalid (?:boolean )?value "(.*)" for (?:flag )?-([A-Za-z0-9_-]+): (parse error|value out of range)$`)

// explainFlagValue rewrites the Go flag package's "invalid value ... parse error" for a flag of
// flags into why the value does not parse and what the flag takes; any other error comes back
// as it is.
func explainFlagValue(flags []cli.Flag, err error) error {
	m := flagValueRE.FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	value, err2 := strconv.Unquote(`"` + m[1] + `"`)
	if err2 != nil {
		return err
	}
	name, outOfRange := m[2], m[3] == "value out of range"
	for _, f := range flags {
		if ef, ok := f.(envFlag); ok {
			f = ef.envSourced
		}
		if !hasName(f, name) {
			continue
		}
		var why string
		switch f.(type) {
		case *cli.DurationFlag:
			_, perr := time.ParseDuration(value)
			why = fmt.Sprintf("%v; want a duration such as 90s, 5m or 1h30m", perr)
		case *cli.BoolFlag:
			why = "want true or false (or the flag alone for true)"
		case *cli.IntFlag:
			why = "want a whole number"
			if outOfRange {
				why = "out of range; want a whole number of at most 19 digits"
			}
		default:
			return err
		}
		return fmt.Errorf("invalid value %q for %s: %s", value, dashed(name), why)
	}
	return err
}

// dashed is a flag's name as it is typed: -t, --timeout.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// hasName reports whether f answers to name.
func hasName(f cli.Flag, name string) bool {
	for _, n := range f.Names() {
		if n == name {
			return true
		}
	}
	return false
}

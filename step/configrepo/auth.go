package configrepo

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Auth holds the credentials for the config repository.
type Auth struct {
	// Username and Password (or a token as Password) for HTTPS. A token alone works with
	// GitHub (any username; x-access-token for App tokens) and GitLab (project, group and
	// personal access tokens, deploy tokens with their username).
	Username, Password string
	// SSHKey is a PEM private key (a deploy key) for ssh:// and git@host:path URLs.
	SSHKey []byte
	// SSHKeyPassphrase decrypts SSHKey when it is encrypted.
	SSHKeyPassphrase string
	// KnownHosts is a known_hosts file to check the server's host key against. Without it and
	// without HostKey, SSH_KNOWN_HOSTS or ~/.ssh/known_hosts is used; an unknown host is refused.
	KnownHosts string
	// HostKey pins the server's host key ("ssh-ed25519 AAAA..." as in known_hosts, without
	// the host name), instead of a known_hosts file.
	HostKey string
	// CABundle is PEM certificates trusted for HTTPS in addition to the system roots.
	CABundle []byte
	// InsecureSkipTLS turns off TLS verification (never the default).
	InsecureSkipTLS bool
	// Getenv reads SSH_KNOWN_HOSTS and HOME, for the default known_hosts files; nil means
	// os.Getenv.
	Getenv func(string) string
}

// method returns the go-git auth method for rawURL.
func (a Auth) method(rawURL string) (transport.AuthMethod, error) {
	ep, err := transport.NewEndpoint(rawURL)
	if err != nil {
		return nil, fmt.Errorf("config repo URL: %w", err)
	}
	switch ep.Protocol {
	case "http", "https":
		if a.Password == "" && a.Username == "" {
			return nil, nil
		}
		user := a.Username
		if user == "" {
			user = "x-access-token"
		}
		return &githttp.BasicAuth{Username: user, Password: a.Password}, nil
	case "ssh":
		if len(a.SSHKey) == 0 {
			return nil, errors.New("config repo: an SSH URL needs an SSH private key (--ssh-key)")
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, a.SSHKey, a.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("config repo: reading the SSH private key: %w", err)
		}
		switch {
		case a.HostKey != "":
			pub, _, _, _, err := gossh.ParseAuthorizedKey([]byte(a.HostKey))
			if err != nil {
				return nil, fmt.Errorf("config repo: parsing the pinned SSH host key: %w", err)
			}
			keys.HostKeyCallback = gossh.FixedHostKey(pub)
		case a.KnownHosts != "":
			cb, err := gitssh.NewKnownHostsCallback(a.KnownHosts)
			if err != nil {
				return nil, fmt.Errorf("config repo: reading known_hosts %s: %w", a.KnownHosts, err)
			}
			keys.HostKeyCallback = unknownHost(cb, a.KnownHosts)
		default:
			files := a.defaultKnownHosts()
			cb, err := gitssh.NewKnownHostsCallback(files...)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: no known_hosts file to check it against (looked for %s): %s",
					ErrUnknownHost, ep.Host, strings.Join(files, ", "), knownHostsHint)
			}
			keys.HostKeyCallback = unknownHost(cb, strings.Join(files, ", "))
		}
		return keys, nil
	case "file":
		return nil, nil
	}
	return nil, fmt.Errorf("config repo URL: unsupported protocol %q", ep.Protocol)
}

// knownHostsHint says how to give the host's key.
const knownHostsHint = "give --ssh-known-hosts FILE (a known_hosts file, e.g. from ssh-keyscan HOST) or --ssh-host-key KEY, or set SSH_KNOWN_HOSTS"

// unknownHost wraps a known_hosts callback so that a host missing from files (a key that is
// not there at all, not one that differs) is ErrUnknownHost, naming the host: the run's
// configuration lacks its key, where a mismatch may be an attack (ErrAuth).
func unknownHost(cb gossh.HostKeyCallback, files string) gossh.HostKeyCallback {
	return func(hostname string, remote net.Addr, key gossh.PublicKey) error {
		err := cb(hostname, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) && len(ke.Want) == 0 {
			return fmt.Errorf("%w: %s (%s key %s) is not in %s: %s", ErrUnknownHost, hostname, key.Type(), gossh.FingerprintSHA256(key), files, knownHostsHint)
		}
		return err
	}
}

// defaultKnownHosts lists the known_hosts files ssh reads when none is given, as go-git does:
// those SSH_KNOWN_HOSTS lists, else ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts (go-git
// would read the process's environment for them; missing files are skipped).
func (a Auth) defaultKnownHosts() []string {
	getenv := a.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if v := getenv("SSH_KNOWN_HOSTS"); v != "" {
		return filepath.SplitList(v)
	}
	files := []string{"/etc/ssh/ssh_known_hosts"}
	if home := getenv("HOME"); home != "" {
		files = append([]string{filepath.Join(home, ".ssh", "known_hosts")}, files...)
	}
	return files
}

// moveURLCredentials strips user:password@ from an http(s) URL into auth (when auth has none)
// and returns the clean URL, so the credentials never appear in messages.
func moveURLCredentials(raw string, auth *Auth) (string, error) {
	if raw == "" {
		return "", errors.New("config repo: no URL given")
	}
	if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") && !strings.HasPrefix(raw, "ssh://") {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("config repo URL: %v", redactURLError(err))
	}
	if u.Scheme == "ssh" {
		// ssh://user@host keeps its user (the login name); a password never belongs there.
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		return u.String(), nil
	}
	if u.User != nil {
		if auth.Username == "" && auth.Password == "" {
			auth.Username = u.User.Username()
			auth.Password, _ = u.User.Password()
		}
		u.User = nil
	}
	return u.String(), nil
}

// redactURLError drops the URL text from a url.Error, which may hold credentials.
func redactURLError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err
	}
	return err
}

package forge

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// repoRef is a repository on a forge, as read from its clone URL.
type repoRef struct {
	// scheme and host (with port) of the forge's web and API server; for an SSH URL, https and
	// the SSH host without its port.
	scheme, host string
	// path is the repository's path on the server without ".git": "owner/repo" on GitHub and
	// Gitea, "group/subgroup/project" on GitLab, possibly after the prefix of a forge served
	// under a sub-path.
	path string
}

// parseRepoURL reads a clone URL: https://host/owner/repo.git, ssh://git@host:2222/owner/repo.git
// or git@host:owner/repo.git. Credentials in it are dropped.
func parseRepoURL(raw string) (repoRef, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return repoRef{}, fmt.Errorf("%w: no config repo URL", ErrInvalid)
	}
	var ref repoRef
	switch {
	case strings.HasPrefix(raw, "http://"), strings.HasPrefix(raw, "https://"), strings.HasPrefix(raw, "ssh://"):
		u, err := url.Parse(raw)
		if err != nil {
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err // its text would repeat the URL, credentials included
			}
			return repoRef{}, fmt.Errorf("%w: config repo URL: %v", ErrInvalid, err)
		}
		ref.scheme, ref.host, ref.path = u.Scheme, u.Host, u.Path
		if u.Scheme == "ssh" {
			ref.scheme, ref.host = "https", u.Hostname()
		}
	case strings.Contains(raw, ":") && !strings.Contains(strings.SplitN(raw, ":", 2)[0], "/"):
		// scp-like: [user@]host:path
		hostPart, path, _ := strings.Cut(raw, ":")
		if i := strings.LastIndex(hostPart, "@"); i >= 0 {
			hostPart = hostPart[i+1:]
		}
		ref.scheme, ref.host, ref.path = "https", hostPart, path
	default:
		return repoRef{}, fmt.Errorf("%w: config repo URL %q is not an http(s), ssh or host:path URL of a forge", ErrInvalid, redactUserinfo(raw))
	}
	ref.path = strings.TrimSuffix(strings.Trim(ref.path, "/"), ".git")
	ref.path = strings.Trim(ref.path, "/")
	if ref.host == "" || !strings.Contains(ref.path, "/") {
		return repoRef{}, fmt.Errorf("%w: config repo URL %q names no owner/repository", ErrInvalid, redactUserinfo(raw))
	}
	return ref, nil
}

// redactUserinfo drops user:password@ from a URL for messages.
func redactUserinfo(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		rest := raw[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 && !strings.Contains(rest[:at], "/") {
			return raw[:i+3] + "***@" + rest[at+1:]
		}
	}
	return raw
}

// ownerRepo returns the last two path segments (GitHub and Gitea repositories are owner/name,
// after the sub-path a Gitea may be served under).
func (r repoRef) ownerRepo() (owner, name string, err error) {
	segs := strings.Split(r.path, "/")
	if len(segs) < 2 || segs[len(segs)-2] == "" || segs[len(segs)-1] == "" {
		return "", "", fmt.Errorf("%w: %s names no owner/repository", ErrInvalid, r.path)
	}
	return segs[len(segs)-2], segs[len(segs)-1], nil
}

// prefix is the sub-path the forge is served under: the path before owner/repo.
func (r repoRef) prefix() string {
	segs := strings.Split(r.path, "/")
	if len(segs) <= 2 {
		return ""
	}
	return strings.Join(segs[:len(segs)-2], "/")
}

// hostOf returns the host (with port) of a URL, lower-cased, or "".
func hostOf(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}

// sameHost compares hosts, ignoring a port on either side (an SSH clone URL has none, or another).
func sameHost(a, b string) bool {
	strip := func(h string) string {
		if i := strings.LastIndex(h, ":"); i >= 0 && !strings.Contains(h[i:], "]") {
			h = h[:i]
		}
		return strings.ToLower(h)
	}
	return a != "" && b != "" && strip(a) == strip(b)
}

// Detect names the forge hosting repoURL: github.com, gitlab.com, codeberg.org and gitea.com by
// name; then the CI system running deliver when its server is the repository's host (GitHub
// Actions' GITHUB_SERVER_URL, Gitea Actions' GITEA_ACTIONS, GitLab CI's CI_SERVER_URL); then a
// host named github.*, gitlab.*, gitea.* or forgejo.*. Anything else must be named explicitly.
func Detect(repoURL string, getenv func(string) string) (Kind, error) {
	ref, err := parseRepoURL(repoURL)
	if err != nil {
		return "", err
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	host := strings.ToLower(ref.host)
	name := host
	if i := strings.LastIndex(name, ":"); i >= 0 {
		name = name[:i]
	}
	switch name {
	case "github.com":
		return GitHub, nil
	case "gitlab.com":
		return GitLab, nil
	case "codeberg.org", "gitea.com":
		return Gitea, nil
	}
	if sameHost(hostOf(getenv("GITHUB_SERVER_URL")), host) {
		if getenv("GITEA_ACTIONS") == "true" || getenv("FORGEJO_ACTIONS") == "true" {
			return Gitea, nil
		}
		return GitHub, nil
	}
	if sameHost(hostOf(getenv("CI_SERVER_URL")), host) || sameHost(strings.ToLower(getenv("CI_SERVER_HOST")), host) {
		return GitLab, nil
	}
	first, _, _ := strings.Cut(name, ".")
	switch first {
	case "github":
		return GitHub, nil
	case "gitlab":
		return GitLab, nil
	case "gitea", "forgejo", "codeberg":
		return Gitea, nil
	}
	return "", fmt.Errorf("%w: cannot tell which forge hosts %s; name it with --forge (github, gitea or gitlab)", ErrInvalid, ref.host)
}

// apiURL derives the REST API base of the forge hosting ref: the CI system's own API URL when
// it runs on that forge, else the forge's usual API path on the repository's host.
func apiURL(kind Kind, ref repoRef, getenv func(string) string) string {
	base := ref.scheme + "://" + ref.host
	switch kind {
	case GitHub:
		if api := getenv("GITHUB_API_URL"); api != "" && sameHost(hostOf(getenv("GITHUB_SERVER_URL")), ref.host) {
			return api
		}
		if strings.EqualFold(ref.host, "github.com") {
			return "https://api.github.com/"
		}
		return base + "/api/v3/"
	case Gitea:
		if p := ref.prefix(); p != "" {
			base += "/" + p
		}
		return base + "/api/v1/"
	case GitLab:
		if api := getenv("CI_API_V4_URL"); api != "" && sameHost(hostOf(api), ref.host) {
			return api
		}
		return base + "/api/v4/"
	}
	return base
}

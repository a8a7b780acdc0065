package step

import (
	"testing"

	"github.com/deliverhq/deliver/step/ci"
)

// TestForgeLinks: the config commit and file links of config repos given as https://, ssh://
// and scp-like URLs, on GitHub.com, GitLab.com, the CI's own self-hosted forge (GitHub
// Enterprise Server, a GitLab under a relative URL root or with a separate SSH host) and on
// git servers deliver cannot place.
func TestForgeLinks(t *testing.T) {
	t.Parallel()
	const sha = "0123456789abcdef0123456789abcdef01234567"
	github := ci.Context{Provider: ci.ProviderGitHub, ServerURL: "https://github.com"}
	ghes := ci.Context{Provider: ci.ProviderGitHub, ServerURL: "https://ghe.acme.internal"}
	gitlab := ci.Context{Provider: ci.ProviderGitLab, ServerURL: "https://git.acme.internal/gitlab", SSHHost: "ssh.acme.internal:2222"}
	tests := []struct {
		name, url string
		run       ci.Context
		commit    string // the commit's link; "" for none
	}{
		{"github https", "https://github.com/acme/config.git", ci.Context{}, "https://github.com/acme/config/commit/" + sha},
		{"github scp-like", "git@github.com:acme/config.git", ci.Context{}, "https://github.com/acme/config/commit/" + sha},
		{"github ssh://", "ssh://git@github.com/acme/config", ci.Context{}, "https://github.com/acme/config/commit/" + sha},
		{"github ssh over 443", "ssh://git@ssh.github.com:443/acme/config.git", github, "https://github.com/acme/config/commit/" + sha},
		{"gitlab.com scp-like, subgroup", "git@gitlab.com:acme/platform/config.git", ci.Context{}, "https://gitlab.com/acme/platform/config/-/commit/" + sha},
		{"credentials in the URL are dropped", "https://ci:tok@gitlab.com/acme/config.git/", ci.Context{}, "https://gitlab.com/acme/config/-/commit/" + sha},
		{"GHES https", "https://ghe.acme.internal/acme/config.git", ghes, "https://ghe.acme.internal/acme/config/commit/" + sha},
		{"GHES scp-like", "git@ghe.acme.internal:acme/config.git", ghes, "https://ghe.acme.internal/acme/config/commit/" + sha},
		{"self-hosted GitLab https under a relative root", "https://git.acme.internal/gitlab/acme/config.git", gitlab, "https://git.acme.internal/gitlab/acme/config/-/commit/" + sha},
		{"self-hosted GitLab ssh:// with a port", "ssh://git@git.acme.internal:2222/acme/config.git", gitlab, "https://git.acme.internal/gitlab/acme/config/-/commit/" + sha},
		{"self-hosted GitLab's SSH host", "git@ssh.acme.internal:acme/config.git", gitlab, "https://git.acme.internal/gitlab/acme/config/-/commit/" + sha},
		{"self-hosted GitLab on http", "http://git.acme.internal/gitlab/acme/config.git", gitlab, "http://git.acme.internal/gitlab/acme/config/-/commit/" + sha},
		{"another host than the CI's", "git@git.other.internal:acme/config.git", gitlab, ""},
		{"a plain git server", "https://git.example.com/config.git", ci.Context{}, ""},
		{"outside CI, a self-hosted forge is unknown", "git@git.acme.internal:acme/config.git", ci.Context{}, ""},
		{"no path", "https://github.com/", ci.Context{}, ""},
		{"garbage", "::", github, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := forgeOf(tt.url, tt.run)
			if got := f.commit(sha); got != tt.commit {
				t.Errorf("commit link %q, want %q", got, tt.commit)
			}
			if f.commit("") != "" || f.commit("0000000000000000000000000000000000000000") != "" {
				t.Error("a missing commit has a link")
			}
		})
	}
}

func TestForgeFileLinks(t *testing.T) {
	t.Parallel()
	const sha = "abc123"
	gh := forgeOf("git@github.com:acme/config.git", ci.Context{})
	if got, want := gh.file(sha, "overlays/staging/kustomization.yaml", 7), "https://github.com/acme/config/blob/abc123/overlays/staging/kustomization.yaml#L7"; got != want {
		t.Errorf("github file link %q, want %q", got, want)
	}
	gl := forgeOf("https://gitlab.com/acme/config.git", ci.Context{})
	if got, want := gl.file(sha, "overlays/a b/kustomization.yaml", 0), "https://gitlab.com/acme/config/-/blob/abc123/overlays/a%20b/kustomization.yaml"; got != want {
		t.Errorf("gitlab file link %q, want %q", got, want)
	}
	if got := (webRepo{}).file(sha, "x.yaml", 1); got != "" {
		t.Errorf("unknown forge links %q", got)
	}
	if !gh.is("https://github.com/ACME/config") || gh.is("https://github.com/acme/web") {
		t.Error("is: the workflow's repository is not told apart")
	}
}

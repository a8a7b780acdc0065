package forge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/step/forge"
)

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestDetect(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url string
		env       func(string) string
		want      forge.Kind
	}{
		{"github.com https", "https://github.com/acme/config.git", nil, forge.GitHub},
		{"github.com scp-like", "git@github.com:acme/config.git", nil, forge.GitHub},
		{"github.com ssh", "ssh://git@github.com/acme/config", nil, forge.GitHub},
		{"gitlab.com nested groups", "https://gitlab.com/acme/platform/config.git", nil, forge.GitLab},
		{"codeberg", "https://codeberg.org/acme/config.git", nil, forge.Gitea},
		{"GitHub Enterprise from the Actions runner", "https://git.acme.corp/acme/config.git",
			env("GITHUB_SERVER_URL", "https://git.acme.corp"), forge.GitHub},
		{"Gitea Actions sets GITHUB_SERVER_URL too", "https://git.acme.corp/acme/config.git",
			env("GITHUB_SERVER_URL", "https://git.acme.corp", "GITEA_ACTIONS", "true"), forge.Gitea},
		{"self-hosted GitLab from its CI", "https://git.acme.corp/acme/config.git",
			env("CI_SERVER_URL", "https://git.acme.corp"), forge.GitLab},
		{"self-hosted GitLab over SSH on another port", "ssh://git@git.acme.corp:2222/acme/config.git",
			env("CI_SERVER_URL", "https://git.acme.corp"), forge.GitLab},
		{"host named gitea", "https://gitea.acme.corp/acme/config.git", nil, forge.Gitea},
		{"host named gitlab", "https://gitlab.acme.corp/acme/config.git", nil, forge.GitLab},
		{"CI on another host does not count", "https://gitlab.acme.corp/acme/config.git",
			env("GITHUB_SERVER_URL", "https://github.com"), forge.GitLab},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := forge.Detect(tc.url, tc.env)
			if err != nil || got != tc.want {
				t.Fatalf("Detect(%q) = %q, %v; want %q", tc.url, got, err, tc.want)
			}
		})
	}
}

func TestDetectRefusesWhatItCannotTell(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"https://git.acme.corp/acme/config.git", "--forge"},
		{"https://ci:s3cr3t-t0ken@git.acme.corp/acme/config.git", "--forge"},
		{"https://github.com/config.git", "owner/repository"},
		{"", "no config repo URL"},
		{"/srv/git/config.git", "not an http(s), ssh or host:path URL"},
		{"https://ci:s3cr3t-t0ken@github.com/", "owner/repository"},
	} {
		_, err := forge.Detect(tc.url, nil)
		if !errors.Is(err, forge.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Detect(%q) error = %v; want ErrInvalid mentioning %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t-t0ken") {
			t.Errorf("Detect(%q) error shows the password: %v", tc.url, err)
		}
	}
}

func TestAPIURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind      forge.Kind
		url, want string
		env       func(string) string
	}{
		{forge.GitHub, "https://github.com/acme/config.git", "https://api.github.com/", nil},
		{forge.GitHub, "git@github.com:acme/config.git", "https://api.github.com/", nil},
		{forge.GitHub, "https://ghe.acme.corp/acme/config.git", "https://ghe.acme.corp/api/v3/", nil},
		{forge.GitHub, "https://ghe.acme.corp/acme/config.git", "https://ghe.acme.corp/custom/api/",
			env("GITHUB_SERVER_URL", "https://ghe.acme.corp", "GITHUB_API_URL", "https://ghe.acme.corp/custom/api")},
		{forge.Gitea, "http://127.0.0.1:3000/ci/config.git", "http://127.0.0.1:3000/api/v1/", nil},
		{forge.Gitea, "https://acme.corp/git/ci/config.git", "https://acme.corp/git/api/v1/", nil},
		{forge.Gitea, "ssh://git@gitea.acme.corp:2222/ci/config.git", "https://gitea.acme.corp/api/v1/", nil},
		{forge.GitLab, "https://gitlab.com/acme/platform/config.git", "https://gitlab.com/api/v4/", nil},
		{forge.GitLab, "https://acme.corp/gitlab/acme/config.git", "https://acme.corp/gitlab/api/v4/",
			env("CI_SERVER_URL", "https://acme.corp/gitlab", "CI_API_V4_URL", "https://acme.corp/gitlab/api/v4")},
	} {
		c, err := forge.New(forge.Options{Kind: tc.kind, RepoURL: tc.url, Token: "t0ken", Getenv: tc.env})
		if err != nil {
			t.Errorf("New(%s, %s): %v", tc.kind, tc.url, err)
			continue
		}
		if got := c.APIURL(); got != tc.want {
			t.Errorf("APIURL(%s, %s) = %q, want %q", tc.kind, tc.url, got, tc.want)
		}
	}
}

func TestNewRefusesBadInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		opts forge.Options
		want string
	}{
		{forge.Options{Kind: "bitbucket", RepoURL: "https://github.com/a/b"}, `unknown forge "bitbucket"`},
		{forge.Options{Kind: forge.GitHub, RepoURL: "https://github.com/a/b"}, "needs a token"},
		{forge.Options{Kind: forge.Gitea, RepoURL: "https://gitea.example/a/b"}, "needs a token"},
	} {
		_, err := forge.New(tc.opts)
		if !errors.Is(err, forge.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) error = %v; want ErrInvalid with %q", tc.opts, err, tc.want)
		}
	}
	// GitLab opens merge requests with the push: no token is needed for that.
	if _, err := forge.New(forge.Options{RepoURL: "https://gitlab.com/a/b.git"}); err != nil {
		t.Errorf("New(GitLab without a token): %v", err)
	}
	if k, err := forge.ParseKind("Forgejo"); err != nil || k != forge.Gitea {
		t.Errorf("ParseKind(Forgejo) = %q, %v; want gitea", k, err)
	}
}

func TestBranch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env    string
		images []string
		want   string
	}{
		{"production", []string{"web"}, "deliver/production/web"},
		{"production", []string{"web", "api"}, "deliver/production/api+web"},
		{"production", []string{"api", "web", "api"}, "deliver/production/api+web"},
		// An image name with slashes must not nest branches (refs/heads/a/b and a/b/c cannot
		// both exist).
		{"prod", []string{"team/web"}, "deliver/prod/team-web"},
		{"prod", []string{"registry.example.com:5000/team/web"}, "deliver/prod/registry.example.com-5000-team-web"},
		{"prod eu", []string{"web..lock"}, "deliver/prod-eu/web"},
	} {
		if got := forge.Branch(tc.env, tc.images); got != tc.want {
			t.Errorf("Branch(%q, %q) = %q, want %q", tc.env, tc.images, got, tc.want)
		}
	}
	var many []string
	for i := range 40 {
		many = append(many, "service-number-"+strings.Repeat("x", i%3)+string(rune('a'+i%26)))
	}
	b := forge.Branch("production", many)
	leaf := b[strings.LastIndex(b, "/")+1:]
	if len(leaf) > 100 || b != forge.Branch("production", many) || b == forge.Branch("production", many[1:]) {
		t.Errorf("Branch of 40 images = %q (%d bytes in its last part); want at most 100, stable, and distinct from 39 images", b, len(leaf))
	}
}

package registry

import (
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// explicitKeychain serves the --registry-username/--registry-password credentials to every
// registry.
type explicitKeychain struct{ username, password string }

func (k explicitKeychain) Resolve(authn.Resource) (authn.Authenticator, error) {
	if k.username == "" && k.password == "" {
		return authn.Anonymous, nil
	}
	return &authn.Basic{Username: k.username, Password: k.password}, nil
}

// ciKeychain serves the credentials CI systems hand to jobs: GitLab's CI_REGISTRY_USER and
// CI_REGISTRY_PASSWORD for the project's own registry (CI_REGISTRY), and GITHUB_TOKEN (with
// GITHUB_ACTOR) for ghcr.io.
type ciKeychain struct{ getenv func(string) string }

func (k ciKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	host := target.RegistryStr()
	if reg := k.getenv("CI_REGISTRY"); reg != "" && strings.EqualFold(reg, host) {
		if u, p := k.getenv("CI_REGISTRY_USER"), k.getenv("CI_REGISTRY_PASSWORD"); u != "" && p != "" {
			return &authn.Basic{Username: u, Password: p}, nil
		}
	}
	if host == "ghcr.io" {
		if tok := k.getenv("GITHUB_TOKEN"); tok != "" {
			user := k.getenv("GITHUB_ACTOR")
			if user == "" {
				user = "x-access-token"
			}
			return &authn.Basic{Username: user, Password: tok}, nil
		}
	}
	return authn.Anonymous, nil
}

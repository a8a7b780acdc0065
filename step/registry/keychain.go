package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
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

// dockerKeychain serves the credentials of the docker config the environment names:
// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, else podman's auth file
// ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, then containers/auth.json in
// $XDG_CONFIG_HOME or ~/.config), and the credential helpers the file names. It is
// go-containerregistry's authn.DefaultKeychain with its variables read through getenv: the
// default keychain reads the process's environment (and docker's config package caches its
// directory once per process), so two clients with different environments in one process
// would share one docker config. A credential helper is a program, and runs with the
// process's environment.
type dockerKeychain struct{ getenv func(string) string }

func (k dockerKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	cf, err := k.load()
	if err != nil || cf == nil {
		return authn.Anonymous, err
	}
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry || key == "docker.io" {
			key = authn.DefaultAuthKey // the key docker writes for Docker Hub
		}
		store := credentials.NewFileStore(cf)
		if helper := credentialHelper(cf, key); helper != "" {
			store = credentials.NewNativeStore(cf, helper)
		}
		cfg, err := store.Get(key)
		if err != nil {
			return nil, fmt.Errorf("reading the credentials for %s from %s: %w", key, cf.Filename, err)
		}
		cfg.ServerAddress = "" // set by the store; not a credential
		if cfg != (types.AuthConfig{}) {
			return authn.FromConfig(authn.AuthConfig{
				Username: cfg.Username, Password: cfg.Password, Auth: cfg.Auth,
				IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// load reads the first docker or podman auth file the environment leads to; nil when there
// is none.
func (k dockerKeychain) load() (*configfile.ConfigFile, error) {
	home := k.getenv("HOME")
	var candidates []string
	switch dir := k.getenv("DOCKER_CONFIG"); {
	case dir != "":
		candidates = append(candidates, filepath.Join(dir, "config.json"))
	case home != "":
		candidates = append(candidates, filepath.Join(home, ".docker", "config.json"))
	}
	if f := k.getenv("REGISTRY_AUTH_FILE"); f != "" {
		candidates = append(candidates, f)
	}
	if d := k.getenv("XDG_RUNTIME_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, "containers", "auth.json"))
	}
	switch d := k.getenv("XDG_CONFIG_HOME"); {
	case d != "":
		candidates = append(candidates, filepath.Join(d, "containers", "auth.json"))
	case home != "":
		candidates = append(candidates, filepath.Join(home, ".config", "containers", "auth.json"))
	}
	for _, path := range candidates {
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading registry credentials: %w", err)
		}
		defer f.Close()
		cf := configfile.New(path)
		if err := cf.LoadFromReader(f); err != nil {
			return nil, fmt.Errorf("reading registry credentials from %s: %w", path, err)
		}
		return cf, nil
	}
	return nil, nil
}

// credentialHelper returns the credential helper the config names for key, if any.
func credentialHelper(cf *configfile.ConfigFile, key string) string {
	if h, ok := cf.CredentialHelpers[key]; ok {
		return h
	}
	return cf.CredentialsStore
}

package registry_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/registry"
)

// dockerConfig writes a docker config.json holding user:password for host into a fresh
// directory, and returns the directory.
func dockerConfig(t *testing.T, host, user, password string) string {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	writeFile(t, filepath.Join(dir, "config.json"), fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, host, auth))
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// TestDockerConfigKeychain: the registry credentials of the docker (or podman) config come from
// the files the client's environment names, in docker's order, never from the process's
// environment; two clients with different environments resolve at once, each with its own.
func TestDockerConfigKeychain(t *testing.T) {
	t.Parallel()
	reg := testenv.NewRegistry(t, testenv.WithBasicAuth("ci", "registry-s3cret"))
	if _, err := reg.PushRandomImage("team/web", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	good := dockerConfig(t, reg.Host, "ci", "registry-s3cret")
	wrong := dockerConfig(t, reg.Host, "ci", "wrong-password")
	home := t.TempDir()
	writeFile(t, filepath.Join(home, ".docker", "config.json"), readFile(t, filepath.Join(good, "config.json")))
	podman := filepath.Join(t.TempDir(), "auth.json")
	writeFile(t, podman, readFile(t, filepath.Join(good, "config.json")))
	xdg := t.TempDir()
	writeFile(t, filepath.Join(xdg, "containers", "auth.json"), readFile(t, filepath.Join(good, "config.json")))

	tests := []struct {
		name   string
		getenv func(string) string
		want   error // nil: resolved with the credentials
	}{
		{"DOCKER_CONFIG", envOf("DOCKER_CONFIG", good), nil},
		{"DOCKER_CONFIG wins over HOME", envOf("DOCKER_CONFIG", wrong, "HOME", home), registry.ErrUnauthorized},
		{"HOME", envOf("HOME", home), nil},
		{"REGISTRY_AUTH_FILE", envOf("REGISTRY_AUTH_FILE", podman), nil},
		{"docker's config wins over podman's", envOf("DOCKER_CONFIG", wrong, "REGISTRY_AUTH_FILE", podman), registry.ErrUnauthorized},
		{"XDG_CONFIG_HOME", envOf("XDG_CONFIG_HOME", xdg), nil},
		{"XDG_RUNTIME_DIR", envOf("XDG_RUNTIME_DIR", xdg), nil},
		{"no config", envOf("HOME", t.TempDir()), registry.ErrUnauthorized},
		{"no environment", nil, registry.ErrUnauthorized},
	}
	var wg sync.WaitGroup
	for _, tt := range tests {
		wg.Add(1)
		go func() { // at once: each client must see its own environment only
			defer wg.Done()
			client := registry.New(registry.Options{Getenv: tt.getenv})
			_, err := client.Resolve(context.Background(), reg.Ref("team/web", "1.0.0"))
			if (tt.want == nil && err != nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("%s: Resolve: %v, want %v", tt.name, err, tt.want)
			}
		}()
	}
	wg.Wait()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDockerConfigNotFromProcess: a docker config the process's environment names is not
// read (go-containerregistry's default keychain read it). It sets the process's environment, so
// it does not run in parallel.
func TestDockerConfigNotFromProcess(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.WithBasicAuth("ci", "registry-s3cret"))
	if _, err := reg.PushRandomImage("team/web", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dockerConfig(t, reg.Host, "ci", "registry-s3cret"))
	t.Setenv("HOME", t.TempDir())
	client := registry.New(registry.Options{Getenv: envOf("HOME", t.TempDir())})
	if _, err := client.Resolve(context.Background(), reg.Ref("team/web", "1.0.0")); !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("Resolve with the process's DOCKER_CONFIG only: %v, want ErrUnauthorized", err)
	}
}

// TestDockerConfigHelper: a credential helper the config names (credHelpers for the host, else
// credsStore) supplies the credentials. It puts the helper on the process's PATH, where docker
// looks for it, so it does not run in parallel.
func TestDockerConfigHelper(t *testing.T) {
	reg := testenv.NewRegistry(t, testenv.WithBasicAuth("ci", "registry-s3cret"))
	if _, err := reg.PushRandomImage("team/web", "1.0.0"); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	writeFile(t, filepath.Join(bin, "docker-credential-deliver-test"), `#!/bin/sh
read server
printf '{"ServerURL":"%s","Username":"ci","Secret":"registry-s3cret"}' "$server"
`)
	if err := os.Chmod(filepath.Join(bin, "docker-credential-deliver-test"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(filepath.ListSeparator)+os.Getenv("PATH"))
	for name, config := range map[string]string{
		"credHelpers": fmt.Sprintf(`{"credHelpers": {%q: "deliver-test"}}`, reg.Host),
		"credsStore":  `{"credsStore": "deliver-test"}`,
	} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "config.json"), config)
		client := registry.New(registry.Options{Getenv: envOf("DOCKER_CONFIG", dir)})
		if _, err := client.Resolve(context.Background(), reg.Ref("team/web", "1.0.0")); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A config that does not parse is an error naming the file, not anonymous access.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.json"), `{"auths": `)
	client := registry.New(registry.Options{Getenv: envOf("DOCKER_CONFIG", dir)})
	_, err := client.Resolve(context.Background(), reg.Ref("team/web", "1.0.0"))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "config.json")) {
		t.Errorf("a broken config.json: %v, want an error naming it", err)
	}
}

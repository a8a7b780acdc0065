package configrepo_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/configrepo"
)

// TestSSHDefaultKnownHosts: without --ssh-known-hosts or --ssh-host-key, the server's host key
// is checked against the known_hosts files of Auth.Getenv's environment (SSH_KNOWN_HOSTS, else
// ~/.ssh/known_hosts), never the process's. It sets the process's environment, so it does not
// run in parallel.
func TestSSHDefaultKnownHosts(t *testing.T) {
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	newRepo(t, gs, "ssh")
	ss := testenv.NewSSHServer(t, gs)
	home := t.TempDir()
	knownHosts := filepath.Join(home, ".ssh", "known_hosts")
	if err := os.MkdirAll(filepath.Dir(knownHosts), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(knownHosts, []byte(ss.KnownHosts+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("SSH_KNOWN_HOSTS", knownHosts)
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tests := []struct {
		name   string
		getenv func(string) string
		ok     bool
	}{
		{"SSH_KNOWN_HOSTS", env("SSH_KNOWN_HOSTS", knownHosts), true},
		{"SSH_KNOWN_HOSTS list", env("SSH_KNOWN_HOSTS", "/nonexistent/known_hosts"+string(filepath.ListSeparator)+knownHosts), true},
		{"HOME", env("HOME", home), true},
		{"SSH_KNOWN_HOSTS wins over HOME", env("SSH_KNOWN_HOSTS", filepath.Join(t.TempDir(), "none"), "HOME", home), false},
		{"only the process's environment", env(), false},
	}
	for _, tt := range tests {
		repo, err := configrepo.Clone(ctx, configrepo.Options{URL: ss.RepoURL("ssh"), Branch: "main", Timeout: 30 * time.Second,
			Auth: configrepo.Auth{SSHKey: ss.ClientKeyPEM, Getenv: tt.getenv}})
		if err == nil {
			repo.Close()
		}
		if tt.ok != (err == nil) {
			t.Errorf("%s: clone: %v, want success %t", tt.name, err, tt.ok)
		}
	}
}

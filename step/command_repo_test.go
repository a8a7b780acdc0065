package step_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// TestSSHConfigRepo: a config repo reached over SSH with a deploy key in a file, both the key
// file and the known_hosts file named by relative paths, which resolve against the run's
// working directory; without a known_hosts the run's environment leads to, the host is not
// trusted and nothing is pushed.
func TestSSHConfigRepo(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.0.0")
	s.PushImage(t, "team/web", "1.1.0")
	ss := testenv.NewSSHServer(t, s.Git)
	dir := t.TempDir()
	other := testenv.NewSSHServer(t, s.Git) // another host key, for a known_hosts entry that does not match
	fixture.WriteFiles(t, dir, map[string]string{"keys/deploy-key": string(ss.ClientKeyPEM), "keys/known_hosts": ss.KnownHosts + "\n",
		"keys/other_hosts": "[127.0.0.1]:1 " + ss.HostKey + "\n", "keys/changed_hosts": strings.Fields(ss.KnownHosts)[0] + " " + other.HostKey + "\n"})
	deploy := func(tag string, extra ...string) []string {
		return args([]string{"deploy", "--env", "staging", "--no-apply", "--config-repo", ss.RepoURL(s.Name), "--ssh-key-file", "keys/deploy-key",
			"--image", "web=" + s.Reg.Ref("team/web", tag)}, extra)
	}
	tests := []struct {
		name  string
		env   []string
		args  []string
		want  want
		moved bool
	}{
		{"--ssh-known-hosts", nil, deploy("1.0.0", "--ssh-known-hosts", "keys/known_hosts"), want{code: 0, stdout: `changed=true`}, true},
		{"SSH_KNOWN_HOSTS", []string{"SSH_KNOWN_HOSTS=keys/known_hosts"}, deploy("1.1.0"), want{code: 0, stdout: `changed=true`}, true},
		// A host whose key the run was not given is the run's configuration at fault: exit 2,
		// naming the host and how to give its key; a key that differs is refused as auth.
		{"no known_hosts", nil, deploy("1.0.0"), want{code: step.ExitUsage, stderr: errLine("the SSH host is not known: 127.0.0.1: no known_hosts file to check it against")}, false},
		{"no known_hosts: the hint", nil, deploy("1.0.0"), want{code: step.ExitUsage, stderr: regexp.QuoteMeta("give --ssh-known-hosts FILE")}, false},
		{"known_hosts without the host", nil, deploy("1.0.0", "--ssh-known-hosts", "keys/other_hosts"),
			want{code: step.ExitUsage, stderr: errLine("the SSH host is not known: " + ss.Addr + " (ssh-ed25519 key SHA256:")}, false},
		{"known_hosts without the host: the hint", []string{"SSH_KNOWN_HOSTS=keys/other_hosts"}, deploy("1.0.0"),
			want{code: step.ExitUsage, stderr: regexp.QuoteMeta("give --ssh-known-hosts FILE")}, false},
		{"known_hosts with another key", nil, deploy("1.0.0", "--ssh-known-hosts", "keys/changed_hosts"), want{code: step.ExitAuth, stderr: errLine("knownhosts: key mismatch")}, false},
		{"key file missing", nil, deploy("1.0.0", "--ssh-key-file", "keys/missing"), want{code: step.ExitUsage, stderr: errLine("--ssh-key-file: open " + filepath.Join(dir, "keys/missing"))}, false},
		{"signing key file missing", nil, deploy("1.0.0", "--ssh-known-hosts", "keys/known_hosts", "--signing-key-file", "keys/signing"),
			want{code: step.ExitUsage, stderr: errLine("--signing-key-file: open " + filepath.Join(dir, "keys/signing"))}, false},
	}
	for _, tt := range tests {
		before := s.Head(t)
		r := runIn(t, dir, tt.env, tt.args...)
		tt.want.check(t, r)
		if moved := s.Head(t) != before; moved != tt.moved {
			t.Errorf("%s: the branch moved: %t, want %t", tt.name, moved, tt.moved)
		}
		if strings.Contains(r.stderr+r.stdout, "PRIVATE KEY") {
			t.Errorf("%s: the deploy key is in the output:\n%s", tt.name, r)
		}
	}
}

// TestRepoContentRefusals: what the config repo holds can be bad input too: an overlay that is
// a symlink out of the repo, an environment without overlay, a deliver.yaml that does not
// parse. Each command refuses it with exit 2, naming the file, and pushes nothing.
func TestRepoContentRefusals(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	fixture.WriteFiles(t, outside, map[string]string{"kustomization.yaml": "resources: []\n"})
	s := fixture.NewServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg", "production": "prod"},
		OverlayImages: fixture.StagingImages, Policy: "environments:\n  staging: [automated\n"},
		fixture.Options{Seed: func(dir string) {
			// Relative, with enough "..": go-git rewrites absolute targets into the clone.
			if err := os.Symlink(strings.Repeat("../", 40)+strings.TrimPrefix(outside, "/"), filepath.Join(dir, "overlays", "escape")); err != nil {
				t.Fatal(err)
			}
		}})
	s.PushImage(t, "team/web", "1.0.0")
	image := []string{"--image", "web=" + s.Reg.Ref("team/web", "1.0.0")}
	usage := func(msg string) want { return want{code: step.ExitUsage, stderr: errLine(msg)} }
	tests := []struct {
		name string
		args []string
		want want
	}{
		{"deploy to a symlink out of the repo", args([]string{"deploy", "--env", "escape", "--no-apply"}, image), usage("overlay overlays/escape: path is outside the repository root (it is a symlink to ")},
		{"rollback without overlay", []string{"rollback", "--env", "qa", "--image", "web", "--no-apply"}, usage(`environment "qa": no overlay at overlays/qa in the config repo (overlays has: production, staging)`)},
		{"promote from an environment without overlay", []string{"promote", "--from", "qa", "--to", "staging", "--no-apply"}, usage(`environment "qa": no overlay at overlays/qa`)},
		{"promote to an environment without overlay", []string{"promote", "--from", "staging", "--to", "qa", "--no-apply"}, usage(`environment "qa": no overlay at overlays/qa`)},
		{"deploy under a broken deliver.yaml", args([]string{"deploy", "--env", "staging", "--no-apply"}, image), usage("deliver.yaml")},
		{"lock under a broken deliver.yaml", []string{"lock", "--env", "staging", "--image", "web"}, usage("deliver.yaml")},
		{"unlock under a broken deliver.yaml", []string{"unlock", "--env", "staging", "--image", "web"}, usage("deliver.yaml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.want.check(t, run(t, nil, args(tt.args, s.GitArgs())...))
		})
	}
	t.Cleanup(func() {
		if n := s.Commits(t); n != 1 {
			t.Errorf("%d commits: a refused run pushed", n)
		}
	})
}

// TestURLCredentialsMasked: a token given in the config repo's URL is used, and never shown.
func TestURLCredentialsMasked(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.0.0")
	url := strings.Replace(s.URL, "http://", "http://"+s.Git.Username+":"+s.Git.Password+"@", 1)
	r := run(t, nil, "deploy", "--env", "staging", "--no-apply", "--config-repo", url, "--image", "web="+s.Reg.Ref("team/web", "1.0.0"))
	want{code: 0, stdout: `changed=true`, stderr: `clone: http://(\*\*\*@)?127\.0\.0\.1:\d+/config\.git`}.check(t, r)
	if strings.Contains(r.stdout+r.stderr, s.Git.Password) {
		t.Errorf("the token of the URL is in the output:\n%s", r)
	}
}

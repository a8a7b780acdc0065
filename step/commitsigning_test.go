package step_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/internal/testenv/signtest"
	"github.com/deliverhq/deliver/step"
)

// cloneBare clones the test's config repo with the git CLI, as a reviewer would, and returns
// the clone's git directory.
func cloneBare(t *testing.T, s *fixture.Servers) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("git", "clone", "--quiet", s.Git.BareDir(s.Name), dir)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git clone: %v\n%s", err, out)
	}
	return filepath.Join(dir, ".git")
}

// checkSecretAbsent fails the test if r's output holds the key, a line of it, or its passphrase.
func checkSecretAbsent(t *testing.T, what string, r result, k signtest.Key) {
	t.Helper()
	secrets := []string{}
	if k.Passphrase != "" {
		secrets = append(secrets, k.Passphrase)
	}
	for _, line := range strings.Split(k.Private, "\n") {
		if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			secrets = append(secrets, line)
		}
	}
	for _, s := range secrets {
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			t.Errorf("%s: the output holds the signing key or its passphrase (%.8s...)\n%s", what, s, r)
		}
	}
}

// TestSignedCommits: with a signing key every commit deliver makes is signed, and the real git
// CLI verifies each in a clone of the config repo (`git verify-commit`, %G? = G, the key's
// identity as signer): a deploy that applies and waits, a lock, the failed deploy of an image
// that never becomes ready and its revert, and a promotion. SSH keys (ed25519 with a
// passphrase, RSA) and an OpenPGP key (with a passphrase), given as flag, file and DELIVER_*
// variables; the secret never shows.
func TestSignedCommits(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	const bot = "deliver-bot@example.com"
	keys := []signtest.Key{
		signtest.SSH(t, "ed25519", "correct horse battery", bot),
		signtest.SSH(t, "rsa", "", bot),
		signtest.OpenPGP(t, "ed25519", "correct horse battery", "Deliver Bot", bot),
	}
	for i, k := range keys {
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			ns := uniqueNS("sign")
			s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns, "production": uniqueNS("sign-prod")}, OverlayImages: fixture.StagingImages})
			s.PushImage(t, "team/web", "1.0.0")
			s.PushImage(t, "team/never-ready", "2.0.0")
			// The key reaches deliver three ways: the flag, a file, the variables.
			var signArgs, env []string
			switch i {
			case 0:
				signArgs = []string{"--signing-key", k.Private, "--signing-key-passphrase", k.Passphrase}
			case 1:
				file := filepath.Join(t.TempDir(), "signing-key")
				if err := os.WriteFile(file, []byte(k.Private), 0o600); err != nil {
					t.Fatal(err)
				}
				signArgs = []string{"--signing-key-file", file}
			default:
				env = []string{"DELIVER_SIGNING_KEY=" + k.Private, "DELIVER_SIGNING_KEY_PASSPHRASE=" + k.Passphrase}
			}
			if k.Format == "ssh" {
				// An SSH key names no one: the committer is given. An OpenPGP key's identity is
				// the committer by default.
				signArgs = append(signArgs, "--committer-name", "Deliver Bot", "--committer-email", bot)
			}
			env = append(env, "GITLAB_CI=true", "CI_PIPELINE_SOURCE=web", "GITLAB_USER_NAME=Ada", "GITLAB_USER_EMAIL=ada@example.com")
			deliver := func(cmd ...string) result {
				t.Helper()
				r := run(t, env, args(cmd, signArgs, s.GitArgs())...)
				checkSecretAbsent(t, cmd[0], r, k)
				return r
			}
			kube := []string{"--kubeconfig", cl.Kubeconfig}

			if r := deliver(args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0"), "--timeout", "60s"}, kube)...); r.code != 0 {
				t.Fatalf("deploy:\n%s", r)
			} else if !strings.Contains(r.stderr, "commits are signed with") {
				t.Errorf("deploy does not say which key signs:\n%s", r.stderr)
			}
			if r := deliver("lock", "--env", "production", "--image", "api", "--reason", "freeze"); r.code != 0 {
				t.Fatalf("lock:\n%s", r)
			}
			if r := deliver(args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/never-ready", "2.0.0"), "--timeout", "8s"}, kube)...); r.code != step.ExitRollout || !strings.Contains(r.stderr, "reverted to") {
				t.Fatalf("a failed rollout is reverted, exit %d:\n%s", step.ExitRollout, r)
			}
			if r := deliver("promote", "--no-apply", "--from", "staging", "--to", "production"); r.code != 0 {
				t.Fatalf("promote:\n%s", r)
			}

			log, err := s.Git.Log(s.Name, "main")
			if err != nil {
				t.Fatal(err)
			}
			wantActions := []string{"promote", "revert", "deploy", "lock", "deploy"}
			if len(log) != len(wantActions)+1 {
				t.Fatalf("%d commits, want %d (the seed and %v)", len(log), len(wantActions)+1, wantActions)
			}
			gitDir := cloneBare(t, s)
			for i, action := range wantActions {
				c := log[i]
				if !strings.Contains(c.Message, "Deliver-Action: "+action) {
					t.Errorf("commit %d is not the %s: %q", i, action, c.Message)
				}
				signtest.RequireVerified(t, gitDir, c.Hash.String(), k)
				if c.Committer.Name != "Deliver Bot" || c.Committer.Email != bot || c.Author.Name != "Ada" || c.Author.Email != "ada@example.com" {
					t.Errorf("%s commit: author %s <%s>, committer %s <%s>; want Ada as author and the bot as committer",
						action, c.Author.Name, c.Author.Email, c.Committer.Name, c.Committer.Email)
				}
			}
		})
	}
}

// TestSigningKeyRefused: a signing key that cannot sign, or signing flags that make no sense,
// are bad input: exit 2, the message names the flag, the git server is not even contacted (so
// nothing is pushed), and the key and passphrase never show.
func TestSigningKeyRefused(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg", "production": "prod"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.0.0")
	const bot = "deliver-bot@example.com"
	encrypted := signtest.SSH(t, "ed25519", "the right passphrase", bot)
	plain := signtest.SSH(t, "ed25519", "", bot)
	pgp := signtest.OpenPGP(t, "ed25519", "the right passphrase", "Deliver Bot", bot)
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "id.pub")
	if err := os.WriteFile(pubFile, []byte(plain.Public+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id")
	if err := os.WriteFile(keyFile, []byte(plain.Private), 0o600); err != nil {
		t.Fatal(err)
	}
	deploy := []string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0")}
	for _, tc := range []struct {
		name string
		cmd  []string
		args []string
		env  []string
		key  signtest.Key // whose secrets must not show
		want []string
	}{
		{name: "not a key", cmd: deploy, args: []string{"--signing-key", "not-a-key-at-all"}, want: []string{"--signing-key: not an SSH private key"}},
		{name: "public key file", cmd: deploy, args: []string{"--signing-key-file", pubFile}, want: []string{"--signing-key-file " + pubFile + ": an SSH public key"}},
		{name: "path given as the key", cmd: deploy, env: []string{"DELIVER_SIGNING_KEY=" + keyFile},
			want: []string{"--signing-key: holds the path of a file, not a key: give the path with --signing-key-file"}},
		{name: "missing file", cmd: deploy, args: []string{"--signing-key-file", filepath.Join(dir, "nope")}, want: []string{"--signing-key-file", "no such file"}},
		{name: "encrypted, no passphrase", cmd: deploy, args: []string{"--signing-key", encrypted.Private}, key: encrypted,
			want: []string{"--signing-key: the SSH key is encrypted", "--signing-key-passphrase"}},
		{name: "wrong passphrase, variables", cmd: deploy, env: []string{"DELIVER_SIGNING_KEY=" + encrypted.Private, "DELIVER_SIGNING_KEY_PASSPHRASE=not the passphrase"},
			key: signtest.Key{Private: encrypted.Private, Passphrase: "not the passphrase"}, want: []string{"--signing-key: the SSH key does not decrypt", "--signing-key-passphrase"}},
		{name: "openpgp wrong passphrase", cmd: []string{"lock", "--env", "staging", "--image", "web"}, args: []string{"--signing-key", pgp.Private, "--signing-key-passphrase", "not the passphrase"},
			key: signtest.Key{Private: pgp.Private, Passphrase: "not the passphrase"}, want: []string{"--signing-key: OpenPGP key " + pgp.Fingerprint + " does not decrypt", "--signing-key-passphrase"}},
		{name: "openpgp public key", cmd: []string{"promote", "--no-apply", "--from", "staging", "--to", "production"}, args: []string{"--signing-key", pgp.Public},
			want: []string{"--signing-key: an OpenPGP public key"}},
		{name: "key given twice", cmd: deploy, args: []string{"--signing-key", plain.Private, "--signing-key-file", keyFile}, key: plain,
			want: []string{"--signing-key and --signing-key-file are both set"}},
		{name: "passphrase without a key", cmd: deploy, args: []string{"--signing-key-passphrase", "orphan passphrase"}, key: signtest.Key{Passphrase: "orphan passphrase"},
			want: []string{"--signing-key-passphrase is set, but no key"}},
		{name: "committer e-mail with angle brackets", cmd: deploy, args: []string{"--signing-key", plain.Private, "--committer-email", "bot>@example.com"}, key: plain,
			want: []string{"--committer-email"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			head, requests := s.Head(t), s.Git.Requests()
			r := run(t, tc.env, args(tc.cmd, tc.args, s.GitArgs())...)
			if r.code != step.ExitUsage {
				t.Fatalf("exit %d, want %d (bad input)\n%s", r.code, step.ExitUsage, r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if got := s.Git.Requests(); got != requests {
				t.Errorf("the git server got %d request(s): the key was not refused before the clone", got-requests)
			}
			if s.Head(t) != head {
				t.Error("the config repo moved")
			}
			checkSecretAbsent(t, tc.name, r, tc.key)
		})
	}
}

// TestOpenPGPCommitterMismatchWarns: an OpenPGP key signs for its own identities; a committer
// e-mail it does not hold, or a key without any e-mail, makes commits a forge shows as
// unverified, so deliver warns, and still signs (git itself verifies the signature).
func TestOpenPGPCommitterMismatchWarns(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.0.0")
	k := signtest.OpenPGP(t, "ed25519", "", "Deliver Bot", "deliver-bot@example.com")
	r := run(t, nil, args([]string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0"),
		"--signing-key", k.Private, "--committer-email", "someone-else@example.com"}, s.GitArgs())...)
	if r.code != 0 {
		t.Fatalf("deploy:\n%s", r)
	}
	if !strings.Contains(r.stderr, "the committer e-mail someone-else@example.com is not one of the OpenPGP key's (deliver-bot@example.com)") {
		t.Errorf("no warning about the committer e-mail:\n%s", r.stderr)
	}
	v := signtest.Verify(t, cloneBare(t, s), s.Head(t), k)
	if v.VerifyErr != nil || v.Status != "G" {
		t.Errorf("the commit is not signed: %%G?=%s %v\n%s", v.Status, v.VerifyErr, v.Output)
	}

	// A key whose user ID holds no e-mail cannot be verified by a forge at all.
	g := signtest.NewGPG(t)
	if out, err := g.Run("", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "Deliver Bot", "ed25519", "sign", "never"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	noEmail := g.Export(t, "Deliver Bot", "", "--export-secret-keys")
	s.PushImage(t, "team/web", "1.1.0")
	r = run(t, nil, args([]string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.1.0"),
		"--signing-key", noEmail.Private}, s.GitArgs())...)
	if r.code != 0 || !strings.Contains(r.stderr, "the OpenPGP key has no e-mail in its user IDs") {
		t.Errorf("deploy with a key without e-mail: want success and a warning\n%s", r)
	}
}

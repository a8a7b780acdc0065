// Package signtest makes commit signing keys the way users make them (ssh-keygen, gpg) and
// checks signed commits with the real git CLI (`git verify-commit`, `git log
// --show-signature`), as a protected branch's owner would: SSH signatures against an
// allowed-signers file (gpg.ssh.allowedSignersFile), OpenPGP signatures against a keyring
// holding only the public key. It is for tests only; it needs git, ssh-keygen and gpg on PATH
// (.ci/run installs them).
package signtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Key is a signing key as deliver is given it, and what a verifier needs to check it.
type Key struct {
	// Name says what the key is, for test names ("ssh-ed25519", "openpgp-rsa2048", ...).
	Name string
	// Format is "ssh" or "openpgp".
	Format string
	// Private is the private key's file content: OpenSSH format, or an armored OpenPGP secret
	// key export.
	Private string
	// Passphrase protects Private ("" for none).
	Passphrase string
	// Public is the public key: an authorized_keys line, or an armored OpenPGP public key.
	Public string
	// Email is the identity the key is for: the OpenPGP user ID's e-mail, the principal of the
	// SSH key's allowed-signers line.
	Email string
	// Fingerprint is the OpenPGP key's fingerprint ("" for SSH).
	Fingerprint string
}

// command runs name with args in dir with env (plus PATH) as its whole environment, within a
// minute, and returns its combined output.
func command(env []string, dir, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// SSH makes an SSH key with ssh-keygen: typ is ed25519, ecdsa or rsa; passphrase "" for none;
// extra are more ssh-keygen flags ("-m", "PEM" for the old PEM format).
func SSH(t testing.TB, typ, passphrase, email string, extra ...string) Key {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "id")
	args := append([]string{"-q", "-t", typ, "-N", passphrase, "-C", email, "-f", file}, extra...)
	if typ == "rsa" {
		args = append(args, "-b", "3072")
	}
	if _, err := command([]string{"HOME=" + dir}, dir, "", "ssh-keygen", args...); err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return Key{Name: "ssh-" + typ, Format: "ssh", Private: string(priv), Passphrase: passphrase, Public: strings.TrimSpace(string(pub)), Email: email}
}

// GPG is a temporary GnuPG home: a keyring of its own, its agent stopped when the test ends.
type GPG struct {
	Home string
}

// NewGPG makes an empty GnuPG home. Its path is short (under os.TempDir, not the test's
// directory): gpg-agent's socket lives in it, and a socket path is limited to 108 bytes.
func NewGPG(t testing.TB) *GPG {
	t.Helper()
	home, err := os.MkdirTemp("", "gpg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &GPG{Home: home}
	t.Cleanup(func() {
		// Stop the agent this home started (gpg starts one on demand), then remove the home.
		_, _ = command(g.env(), home, "", "gpgconf", "--homedir", home, "--kill", "all")
		_ = os.RemoveAll(home)
	})
	return g
}

func (g *GPG) env() []string { return []string{"GNUPGHOME=" + g.Home, "HOME=" + g.Home} }

// Run runs gpg in the home, in batch mode, with stdin as its input.
func (g *GPG) Run(stdin string, args ...string) (string, error) {
	return command(g.env(), g.Home, stdin, "gpg", append([]string{"--batch", "--no-tty", "--quiet"}, args...)...)
}

// OpenPGP makes an OpenPGP key with gpg (algo as --quick-gen-key takes it: ed25519, rsa2048,
// ...), usable to sign, and exports it armored, protected by passphrase ("" for none).
func OpenPGP(t testing.TB, algo, passphrase, name, email string) Key {
	t.Helper()
	g := NewGPG(t)
	uid := fmt.Sprintf("%s <%s>", name, email)
	if _, err := g.Run("", "--pinentry-mode", "loopback", "--passphrase", passphrase, "--quick-gen-key", uid, algo, "sign", "never"); err != nil {
		t.Fatal(err)
	}
	return g.Export(t, email, passphrase, "--export-secret-keys")
}

// Export exports the key of email from the home: its secret part with exportCmd
// (--export-secret-keys, --export-secret-subkeys), armored, and its public part.
func (g *GPG) Export(t testing.TB, email, passphrase, exportCmd string) Key {
	t.Helper()
	priv, err := g.Run("", "--pinentry-mode", "loopback", "--passphrase", passphrase, "--armor", exportCmd, email)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := g.Run("", "--armor", "--export", email)
	if err != nil {
		t.Fatal(err)
	}
	return Key{Name: "openpgp", Format: "openpgp", Private: priv, Passphrase: passphrase, Public: pub, Email: email, Fingerprint: g.Fingerprint(t, email)}
}

// Fingerprint is the fingerprint of the primary key of email in the home.
func (g *GPG) Fingerprint(t testing.TB, email string) string {
	t.Helper()
	out, err := g.Run("", "--with-colons", "--list-keys", email)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 {
			return f[9]
		}
	}
	t.Fatalf("no fingerprint for %s in:\n%s", email, out)
	return ""
}

// Verification is what the git CLI said of a commit.
type Verification struct {
	// Status is git's %G?: G good, B bad, U good but of unknown validity, N none, E cannot be
	// checked, ...
	Status string
	// Signer is git's %GS: the principal (SSH) or user ID (OpenPGP) that signed.
	Signer string
	// VerifyErr is the error of `git verify-commit` (nil: it exited 0).
	VerifyErr error
	// Output is what `git verify-commit` and `git log --show-signature` printed.
	Output string
}

// Verify checks commit in the repository gitDir with the git CLI, trusting key only: an SSH key
// through an allowed-signers file naming key.Email, an OpenPGP key through a fresh keyring
// holding its public part, ultimately trusted.
func Verify(t testing.TB, gitDir, commit string, key Key) Verification {
	t.Helper()
	home := t.TempDir()
	env := []string{"HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull, "GIT_DIR=" + gitDir}
	var cfg []string
	switch key.Format {
	case "ssh":
		signers := filepath.Join(home, "allowed_signers")
		if err := os.WriteFile(signers, []byte(fmt.Sprintf("%s namespaces=\"git\" %s\n", key.Email, key.Public)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg = []string{"-c", "gpg.format=ssh", "-c", "gpg.ssh.allowedSignersFile=" + signers}
	case "openpgp":
		g := NewGPG(t)
		if _, err := g.Run(key.Public, "--import"); err != nil {
			t.Fatal(err)
		}
		if _, err := g.Run(key.Fingerprint+":6:\n", "--import-ownertrust"); err != nil {
			t.Fatal(err)
		}
		env = append(env, "GNUPGHOME="+g.Home)
		cfg = []string{"-c", "gpg.program=gpg"}
	default:
		t.Fatalf("unknown key format %q", key.Format)
	}
	var v Verification
	out, err := command(env, home, "", "git", append(cfg, "verify-commit", "-v", commit)...)
	v.VerifyErr, v.Output = err, out
	show, err := command(env, home, "", "git", append(cfg, "log", "-1", "--show-signature", commit)...)
	if err != nil {
		t.Fatal(err)
	}
	v.Output += show
	st, err := command(env, home, "", "git", append(cfg, "log", "-1", "--format=%G?%n%GS", commit)...)
	if err != nil {
		t.Fatal(err)
	}
	status, signer, _ := strings.Cut(strings.TrimSpace(st), "\n")
	v.Status, v.Signer = status, signer
	return v
}

// RequireVerified fails the test unless git verifies commit as signed by key: `git
// verify-commit` exits 0, `git log --show-signature` says the signature is good, %G? is G
// (good, trusted) and the signer is the key's identity.
func RequireVerified(t testing.TB, gitDir, commit string, key Key) {
	t.Helper()
	v := Verify(t, gitDir, commit, key)
	good := map[string]string{"ssh": `Good "git" signature for ` + key.Email, "openpgp": "Good signature from"}[key.Format]
	if v.VerifyErr != nil || v.Status != "G" || !strings.Contains(v.Signer, key.Email) || !strings.Contains(v.Output, good) {
		t.Fatalf("commit %s is not verified as signed by %s (%s): %%G?=%q %%GS=%q, verify-commit: %v\n%s",
			commit, key.Name, key.Email, v.Status, v.Signer, v.VerifyErr, v.Output)
	}
}

// VerifySignature checks with the real tools that sig is key's signature of msg, as git asks
// them to: `ssh-keygen -Y verify` with namespace git against an allowed-signers file naming
// key.Email, or `gpg --verify` against a keyring holding only the public key.
func VerifySignature(t testing.TB, key Key, msg, sig []byte) error {
	t.Helper()
	dir := t.TempDir()
	msgFile, sigFile := filepath.Join(dir, "msg"), filepath.Join(dir, "msg.sig")
	for f, b := range map[string][]byte{msgFile: msg, sigFile: sig} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	switch key.Format {
	case "ssh":
		signers := filepath.Join(dir, "allowed_signers")
		if err := os.WriteFile(signers, []byte(fmt.Sprintf("%s namespaces=\"git\" %s\n", key.Email, key.Public)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := command([]string{"HOME=" + dir}, dir, string(msg), "ssh-keygen", "-Y", "verify", "-f", signers, "-I", key.Email, "-n", "git", "-s", sigFile)
		return err
	case "openpgp":
		g := NewGPG(t)
		if _, err := g.Run(key.Public, "--import"); err != nil {
			t.Fatal(err)
		}
		_, err := g.Run("", "--verify", sigFile, msgFile)
		return err
	}
	t.Fatalf("unknown key format %q", key.Format)
	return nil
}

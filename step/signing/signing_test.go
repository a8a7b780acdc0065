package signing_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv/signtest"
	"github.com/deliverhq/deliver/step/signing"
)

// gpgKey makes a key in a GnuPG home with the gpg commands given (each a list of arguments, run
// with the passphrase in loopback mode; {fpr} stands for the fingerprint of email's key) and
// exports it with exportCmd.
func gpgKey(t *testing.T, name, email, passphrase, exportCmd string, cmds ...[]string) signtest.Key {
	t.Helper()
	g := signtest.NewGPG(t)
	for _, args := range cmds {
		args = append([]string(nil), args...)
		for i, a := range args {
			if a == "{fpr}" {
				args[i] = g.Fingerprint(t, email)
			}
		}
		if out, err := g.Run("", append([]string{"--pinentry-mode", "loopback", "--passphrase", passphrase}, args...)...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	k := g.Export(t, email, passphrase, exportCmd)
	k.Name = name
	return k
}

// TestSign: every kind of key users have signs, and the real verifiers (ssh-keygen -Y verify
// with namespace git, gpg --verify) accept the signature, and refuse it for another message.
func TestSign(t *testing.T) {
	t.Parallel()
	const email = "bot@example.com"
	uid := "Deliver Bot <" + email + ">"
	keys := []signtest.Key{
		signtest.SSH(t, "ed25519", "pass phrase", email),
		signtest.SSH(t, "ecdsa", "", email, "-m", "PKCS8"),
		signtest.SSH(t, "rsa", "pass phrase", email, "-m", "PEM"),
		// A passphrase given for a key that has none is ignored.
		signtest.SSH(t, "rsa", "", email),
		gpgKey(t, "openpgp-ed25519", email, "pass phrase", "--export-secret-keys", []string{"--quick-gen-key", uid, "ed25519", "sign", "never"}),
		gpgKey(t, "openpgp-rsa2048", email, "", "--export-secret-keys", []string{"--quick-gen-key", uid, "rsa2048", "sign", "never"}),
		// The primary key stays offline (a stub in the export); a subkey signs.
		gpgKey(t, "openpgp-signing-subkey", email, "pass phrase", "--export-secret-subkeys",
			[]string{"--quick-gen-key", uid, "ed25519", "cert", "never"},
			[]string{"--quick-add-key", "{fpr}", "ed25519", "sign", "never"}),
	}
	keys[1].Name, keys[2].Name, keys[3].Name = "ssh-ecdsa-pkcs8", "ssh-rsa-pem", "ssh-rsa-unneeded-passphrase"
	keys[3].Passphrase = "unused"
	wantFormat := map[string]signing.Format{"ssh": signing.FormatSSH, "openpgp": signing.FormatOpenPGP}
	for _, k := range keys {
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			key, err := signing.Parse([]byte(k.Private), []byte(k.Passphrase))
			if err != nil {
				t.Fatal(err)
			}
			if key.Format() != wantFormat[k.Format] {
				t.Errorf("Format() = %s, want %s", key.Format(), k.Format)
			}
			if k.Format == "openpgp" {
				if !strings.Contains(key.String(), k.Fingerprint) {
					t.Errorf("String() = %q does not name the fingerprint %s", key.String(), k.Fingerprint)
				}
				if got := key.Emails(); len(got) != 1 || got[0] != email {
					t.Errorf("Emails() = %q, want [%s]", got, email)
				}
				if name, e := key.Identity(); name != "Deliver Bot" || e != email {
					t.Errorf("Identity() = %q, %q, want %q", name, e, uid)
				}
			} else if name, e := key.Identity(); !strings.Contains(key.String(), "SHA256:") || key.Emails() != nil || name != "" || e != "" {
				t.Errorf("String() = %q, Emails() = %q, Identity() = %q, %q", key.String(), key.Emails(), name, e)
			}
			msg := []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nauthor a <a@b> 1 +0000\ncommitter a <a@b> 1 +0000\n\nmessage\n")
			sig, err := key.Sign(bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			wantArmor := map[string]string{"ssh": "-----BEGIN SSH SIGNATURE-----\n", "openpgp": "-----BEGIN PGP SIGNATURE-----\n"}[k.Format]
			if !bytes.HasPrefix(sig, []byte(wantArmor)) {
				t.Errorf("signature starts %.40q, want %q", sig, wantArmor)
			}
			if err := signtest.VerifySignature(t, k, msg, sig); err != nil {
				t.Errorf("the real verifier refuses the signature: %v", err)
			}
			if err := key.Verify(msg, sig); err != nil {
				t.Errorf("Verify: %v", err)
			}
			other := append(bytes.Clone(msg), 'x')
			if err := signtest.VerifySignature(t, k, other, sig); err == nil {
				t.Error("the real verifier accepts the signature for another message: the check proves nothing")
			}
			if err := key.Verify(other, sig); err == nil {
				t.Error("Verify accepts the signature for another message")
			}
		})
	}
}

// TestParseRefuses: keys that cannot sign are refused by Parse, with a message that says why
// and holds neither the key nor the passphrase.
func TestParseRefuses(t *testing.T) {
	t.Parallel()
	const email = "bot@example.com"
	uid := "Deliver Bot <" + email + ">"
	sshEnc := signtest.SSH(t, "ed25519", "right passphrase", email)
	sshKey := signtest.SSH(t, "ed25519", "", email)
	pgpEnc := gpgKey(t, "enc", email, "right passphrase", "--export-secret-keys", []string{"--quick-gen-key", uid, "ed25519", "sign", "never"})
	two := signtest.NewGPG(t)
	for _, who := range []string{"One <one@example.com>", "Two <two@example.com>"} {
		if _, err := two.Run("", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", who, "ed25519", "sign", "never"); err != nil {
			t.Fatal(err)
		}
	}
	twoKeys, err := two.Run("", "--pinentry-mode", "loopback", "--passphrase", "", "--armor", "--export-secret-keys")
	if err != nil {
		t.Fatal(err)
	}
	// A revoked key: gpg writes a revocation certificate when it makes a key; importing it
	// (without the colon that guards it against being imported by mistake) revokes the key.
	revoked := signtest.NewGPG(t)
	if _, err := revoked.Run("", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"); err != nil {
		t.Fatal(err)
	}
	rev, err := os.ReadFile(filepath.Join(revoked.Home, "openpgp-revocs.d", revoked.Fingerprint(t, email)+".rev"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := revoked.Run(strings.ReplaceAll(string(rev), ":-----BEGIN", "-----BEGIN"), "--import"); err != nil {
		t.Fatal(err)
	}
	revokedKey := revoked.Export(t, email, "", "--export-secret-keys")
	if out, err := revoked.Run("", "--list-keys", email); err != nil || !strings.Contains(out, "revoked") {
		t.Fatalf("gpg does not list the key as revoked, the case proves nothing: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name, key, passphrase string
		want                  string
		wantPassphrase        bool
	}{
		{name: "empty", key: "  \n", want: "empty"},
		{name: "not a key", key: "hunter2hunter2hunter2", want: "not an SSH private key"},
		{name: "ssh public key", key: sshKey.Public, want: "an SSH public key"},
		{name: "openpgp public key", key: pgpEnc.Public, want: "an OpenPGP public key"},
		{name: "ssh truncated", key: sshKey.Private[:len(sshKey.Private)/2] + "\n-----END OPENSSH PRIVATE KEY-----\n", want: "not a usable SSH private key"},
		{name: "ssh encrypted, no passphrase", key: sshEnc.Private, want: "is encrypted", wantPassphrase: true},
		{name: "ssh wrong passphrase", key: sshEnc.Private, passphrase: "wrong passphrase", want: "does not decrypt", wantPassphrase: true},
		{name: "ssh dsa, PEM", key: signtest.SSH(t, "dsa", "", email, "-m", "PEM").Private, want: "ssh-dss"},
		{name: "ssh dsa, OpenSSH format", key: signtest.SSH(t, "dsa", "", email).Private, want: "ed25519, ECDSA or RSA"},
		{name: "openpgp encrypted, no passphrase", key: pgpEnc.Private, want: "is encrypted", wantPassphrase: true},
		{name: "openpgp wrong passphrase", key: pgpEnc.Private, passphrase: "wrong passphrase", want: "does not decrypt", wantPassphrase: true},
		{name: "openpgp two secret keys", key: twoKeys, want: "holds 2 secret keys"},
		{name: "openpgp garbled", key: strings.Replace(pgpEnc.Private, "\n\n", "\n\nAAAA", 1), want: "not a usable OpenPGP key"},
		{name: "openpgp expired", want: "no valid signing key", key: gpgKey(t, "expired", email, "", "--export-secret-keys",
			[]string{"--faked-system-time", "20200101T000000", "--quick-gen-key", uid, "ed25519", "sign", "1d"}).Private},
		{name: "openpgp revoked", want: "no valid signing key", key: revokedKey.Private},
		{name: "openpgp may not sign", want: "no valid signing key", key: gpgKey(t, "cert-only", email, "", "--export-secret-keys",
			[]string{"--quick-gen-key", uid, "ed25519", "cert", "never"},
			[]string{"--quick-add-key", "{fpr}", "cv25519", "encr", "never"}).Private},
		{name: "openpgp signing key is a stub", want: "is a stub", key: gpgKey(t, "stub", email, "", "--export-secret-subkeys",
			[]string{"--quick-gen-key", uid, "ed25519", "sign", "never"},
			[]string{"--quick-add-key", "{fpr}", "cv25519", "encr", "never"}).Private},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := signing.Parse([]byte(tc.key), []byte(tc.passphrase))
			if err == nil {
				t.Fatalf("accepted as %s", k)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if got := errors.Is(err, signing.ErrPassphrase); got != tc.wantPassphrase {
				t.Errorf("errors.Is(err, ErrPassphrase) = %v, want %v (%v)", got, tc.wantPassphrase, err)
			}
			for _, line := range strings.Split(tc.key, "\n") {
				if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
					t.Errorf("the error holds a line of the key: %q", err)
				}
			}
			if tc.passphrase != "" && strings.Contains(err.Error(), tc.passphrase) {
				t.Errorf("the error holds the passphrase: %q", err)
			}
		})
	}
}

// Package signing signs the commits deliver makes, so that a config repo whose protected branch
// requires signed commits takes them. A Key is an SSH or an OpenPGP private key:
//
//   - SSH keys (ed25519, ECDSA, RSA; OpenSSH or PEM format, passphrase-protected or not) sign in
//     the SSHSIG format git writes with gpg.format=ssh: an armored "SSH SIGNATURE" block,
//     namespace "git", hash sha512, RSA keys with rsa-sha2-512. `git verify-commit` checks it
//     with gpg.ssh.allowedSignersFile; GitHub and GitLab with the key added to an account as a
//     signing key.
//   - OpenPGP keys (an armored secret key export, passphrase-protected or not) sign an armored
//     detached signature with their signing (sub)key, what gpg writes for git.
//
// Parse reads a key and signs and verifies a test message with it, so a key that does not
// parse, is encrypted without the right passphrase, has no usable signing key (expired,
// revoked, a stub whose secret is on a smartcard) or cannot sign is refused before anything is
// cloned or pushed. Errors never hold key material.
package signing

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// Format is the kind of a Key and of the signatures it makes.
type Format string

// The formats a Key may have.
const (
	FormatSSH     Format = "ssh"
	FormatOpenPGP Format = "openpgp"
)

// ErrPassphrase: the key is encrypted and no passphrase, or a wrong one, was given.
var ErrPassphrase = errors.New("passphrase")

// sshNamespace and sshHash are what git signs and verifies SSH signatures with.
const (
	sshNamespace = "git"
	sshHash      = sshsig.HashSHA512
)

// Key is a private key that signs git objects. It is safe for concurrent use.
type Key struct {
	format Format
	ssh    ssh.Signer
	pgp    *openpgp.Entity
	pgpCfg *packet.Config
	desc   string
	// name and emails are an OpenPGP key's identities: its primary user ID's name, and the
	// e-mails of every user ID not revoked, the primary's first.
	name   string
	emails []string
}

// Parse reads an SSH private key (-----BEGIN OPENSSH PRIVATE KEY----- or a PEM RSA/EC/PKCS#8
// key) or an armored OpenPGP secret key (-----BEGIN PGP PRIVATE KEY BLOCK-----), decrypting it
// with passphrase when it is encrypted, then signs a test message with it and verifies the
// signature. A passphrase given for a key that is not encrypted is ignored.
func Parse(key, passphrase []byte) (*Key, error) {
	text := strings.TrimSpace(string(key))
	var k *Key
	var err error
	switch {
	case text == "":
		return nil, errors.New("empty")
	case strings.HasPrefix(text, "-----BEGIN PGP PRIVATE KEY BLOCK-----"):
		k, err = parseOpenPGP([]byte(text), passphrase)
	case strings.HasPrefix(text, "-----BEGIN PGP PUBLIC KEY BLOCK-----"):
		return nil, errors.New("an OpenPGP public key: give the secret key (gpg --armor --export-secret-keys KEYID)")
	case strings.HasPrefix(text, "-----BEGIN "):
		k, err = parseSSH([]byte(text), passphrase)
	case isSSHPublicKey(text):
		return nil, errors.New("an SSH public key: give the private key (the file without .pub)")
	default:
		return nil, errors.New("not an SSH private key (-----BEGIN OPENSSH PRIVATE KEY-----) nor an armored OpenPGP secret key (-----BEGIN PGP PRIVATE KEY BLOCK-----)")
	}
	if err != nil {
		return nil, err
	}
	if err := k.selfTest(); err != nil {
		return nil, fmt.Errorf("%s cannot sign: %w", k.desc, err)
	}
	return k, nil
}

// isSSHPublicKey recognises a public key line (authorized_keys, .pub file).
func isSSHPublicKey(text string) bool {
	_, _, _, _, err := ssh.ParseAuthorizedKey([]byte(text))
	return err == nil
}

func parseSSH(key, passphrase []byte) (*Key, error) {
	signer, err := ssh.ParsePrivateKey(key)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("the SSH key is encrypted: give its %w", ErrPassphrase)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(key, passphrase)
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("the SSH key does not decrypt with the %w given", ErrPassphrase)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("not a usable SSH private key (ed25519, ECDSA or RSA, in OpenSSH or PEM format): %w", err)
	}
	pub := signer.PublicKey()
	switch pub.Type() {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA:
	default:
		// DSA: OpenSSH has dropped it, and neither GitHub nor GitLab verifies it.
		return nil, fmt.Errorf("an SSH key of type %s: use an ed25519, ECDSA or RSA key", pub.Type())
	}
	return &Key{format: FormatSSH, ssh: signer, desc: "SSH key " + pub.Type() + " " + ssh.FingerprintSHA256(pub)}, nil
}

func parseOpenPGP(key, passphrase []byte) (*Key, error) {
	entities, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(key))
	if err != nil {
		return nil, fmt.Errorf("not a usable OpenPGP key: %w", err)
	}
	var secret []*openpgp.Entity
	for _, e := range entities {
		if e.PrivateKey != nil {
			secret = append(secret, e)
		}
	}
	switch len(secret) {
	case 0:
		return nil, errors.New("the OpenPGP block holds no secret key: give the secret key (gpg --armor --export-secret-keys KEYID)")
	case 1:
	default:
		return nil, fmt.Errorf("the OpenPGP block holds %d secret keys: export only the one to sign with (gpg --armor --export-secret-keys KEYID)", len(secret))
	}
	e := secret[0]
	desc := fmt.Sprintf("OpenPGP key %X", e.PrimaryKey.Fingerprint)
	now := time.Now()
	sk, ok := e.SigningKey(now)
	if !ok {
		return nil, fmt.Errorf("%s has no valid signing key: it has expired or been revoked, or neither it nor a subkey may sign", desc)
	}
	switch {
	case sk.PrivateKey == nil:
		return nil, fmt.Errorf("%s: the secret part of its signing key %X is not in the export", desc, sk.PublicKey.Fingerprint)
	case sk.PrivateKey.Dummy():
		return nil, fmt.Errorf("%s: its signing key %X is a stub, its secret part is elsewhere (a smartcard, or left out of the export)", desc, sk.PublicKey.Fingerprint)
	case sk.PrivateKey.Encrypted && len(passphrase) == 0:
		return nil, fmt.Errorf("%s is encrypted: give its %w", desc, ErrPassphrase)
	case sk.PrivateKey.Encrypted:
		if err := sk.PrivateKey.Decrypt(passphrase); err != nil {
			return nil, fmt.Errorf("%s does not decrypt with the %w given", desc, ErrPassphrase)
		}
	}
	if sk.PublicKey.KeyId != e.PrimaryKey.KeyId {
		desc += fmt.Sprintf(" (signing subkey %X)", sk.PublicKey.Fingerprint)
	}
	var name string
	var emails []string
	if id := e.PrimaryIdentity(); id != nil && id.UserId != nil {
		name = id.UserId.Name
		if id.UserId.Email != "" {
			emails = append(emails, id.UserId.Email)
		}
	}
	for _, id := range e.Identities {
		if id.UserId != nil && id.UserId.Email != "" && !id.Revoked(now) && !slices.Contains(emails, id.UserId.Email) {
			emails = append(emails, id.UserId.Email)
		}
	}
	return &Key{
		format: FormatOpenPGP, pgp: e, desc: desc, name: name, emails: emails,
		pgpCfg: &packet.Config{SigningKeyId: sk.PublicKey.KeyId},
	}, nil
}

// Sign returns the armored signature of message, as git stores it in a commit's gpgsig header.
// It has the signature of go-git's Signer interface.
func (k *Key) Sign(message io.Reader) ([]byte, error) {
	switch k.format {
	case FormatSSH:
		sig, err := sshsig.Sign(message, k.ssh, sshHash, sshNamespace)
		if err != nil {
			return nil, fmt.Errorf("signing with %s: %w", k.desc, err)
		}
		return sshsig.Armor(sig), nil
	case FormatOpenPGP:
		var b bytes.Buffer
		if err := openpgp.ArmoredDetachSign(&b, k.pgp, message, k.pgpCfg); err != nil {
			return nil, fmt.Errorf("signing with %s: %w", k.desc, err)
		}
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("signing: unknown key format %q", k.format)
}

// Verify checks that signature, as Sign makes it, is the key's signature of message.
func (k *Key) Verify(message, signature []byte) error {
	switch k.format {
	case FormatSSH:
		sig, err := sshsig.Unarmor(signature)
		if err != nil {
			return fmt.Errorf("reading the SSH signature: %w", err)
		}
		return sshsig.Verify(bytes.NewReader(message), sig, k.ssh.PublicKey(), sshHash, sshNamespace)
	case FormatOpenPGP:
		_, err := openpgp.CheckArmoredDetachedSignature(openpgp.EntityList{k.pgp}, bytes.NewReader(message), bytes.NewReader(signature), nil)
		return err
	}
	return fmt.Errorf("verifying: unknown key format %q", k.format)
}

// selfTest signs a test message and verifies the signature.
func (k *Key) selfTest() error {
	msg := []byte("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\ndeliver: signing key check\n")
	sig, err := k.Sign(bytes.NewReader(msg))
	if err != nil {
		return err
	}
	return k.Verify(msg, sig)
}

// Format is the key's format.
func (k *Key) Format() Format { return k.format }

// String names the key by type and fingerprint (never its secret), e.g. "SSH key ssh-ed25519
// SHA256:…" or "OpenPGP key 0123…".
func (k *Key) String() string { return k.desc }

// Identity is the name and e-mail of an OpenPGP key's primary user ID, which git and the forges
// expect as the committer of the commits it signs; empty for an SSH key, which names no one.
func (k *Key) Identity() (name, email string) {
	if len(k.emails) > 0 {
		email = k.emails[0]
	}
	return k.name, email
}

// Emails are the e-mail addresses of an OpenPGP key's user IDs (not revoked), the primary's
// first, one of which a forge expects as the committer's; nil for an SSH key.
func (k *Key) Emails() []string { return slices.Clone(k.emails) }

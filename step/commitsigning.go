// commitsigning.go owns --signing-key: binding the key that signs every commit deliver makes.

package step

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/signing"
)

// commitSigning binds the commit signing flags into opts: the signing key (--signing-key or
// --signing-key-file, with --signing-key-passphrase), parsed and tried on a test message, and
// the committer. A key that cannot sign is bad input, refused here, before anything is cloned
// or pushed.
func (r *runner) commitSigning(c *cli.Context, opts *configrepo.Options) error {
	key, err := r.signingKey(c)
	if err != nil {
		return usage(err)
	}
	name, email := c.String(flagCommitterName), c.String(flagCommitterMail)
	for flag, v := range map[string]string{flagCommitterName: name, flagCommitterMail: email} {
		if i := strings.IndexFunc(v, func(c rune) bool { return c == '<' || c == '>' || unicode.IsControl(c) }); i >= 0 {
			return usage(fmt.Errorf("--%s %q: a git identity cannot hold %q", flag, v, v[i:i+1]))
		}
	}
	if key == nil {
		opts.CommitterName, opts.CommitterEmail = name, email
		return nil
	}
	opts.Signer = key
	// An OpenPGP key names its owner: forges verify its commits only with that e-mail as the
	// committer, so it is the committer unless the flags say otherwise.
	keyName, keyEmail := key.Identity()
	opts.CommitterName, opts.CommitterEmail = firstNonEmpty(name, keyName), firstNonEmpty(email, keyEmail)
	committer := r.author(c)
	committer.Name, committer.Email = firstNonEmpty(opts.CommitterName, committer.Name), firstNonEmpty(opts.CommitterEmail, committer.Email)
	r.rep.Logf("commits are signed with %s; committer %s <%s>", key, committer.Name, committer.Email)
	switch emails := key.Emails(); {
	case key.Format() != signing.FormatOpenPGP, slices.Contains(emails, committer.Email):
	case len(emails) == 0:
		r.rep.Warnf("the OpenPGP key has no e-mail in its user IDs: GitHub and GitLab will show its commits as unverified")
	default:
		r.rep.Warnf("the committer e-mail %s is not one of the OpenPGP key's (%s): GitHub and GitLab will show its commits as unverified; set --%s to one of them",
			committer.Email, strings.Join(emails, ", "), flagCommitterMail)
	}
	return nil
}

// signingKey reads and parses the signing key; nil when none is given.
func (r *runner) signingKey(c *cli.Context) (*signing.Key, error) {
	content, file, passphrase := c.String(flagSigningKey), c.String(flagSigningFile), c.String(flagSigningPass)
	flag := "--" + flagSigningKey
	switch {
	case content != "" && file != "":
		return nil, fmt.Errorf("--%s and --%s are both set: give the key once", flagSigningKey, flagSigningFile)
	case file != "":
		b, err := os.ReadFile(r.path(file))
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", flagSigningFile, err)
		}
		content, flag = string(b), fmt.Sprintf("--%s %s", flagSigningFile, file)
	case content == "" && passphrase != "":
		return nil, fmt.Errorf("--%s is set, but no key to sign with: set --%s or --%s", flagSigningPass, flagSigningKey, flagSigningFile)
	case content == "":
		return nil, nil
	}
	key, err := signing.Parse([]byte(content), []byte(passphrase))
	switch {
	case errors.Is(err, signing.ErrPassphrase):
		return nil, fmt.Errorf("%s: %w (--%s)", flag, err, flagSigningPass)
	case err != nil && file == "" && isFile(r.path(content)):
		// A GitLab File variable holds the path of a file with the value.
		return nil, fmt.Errorf("%s: holds the path of a file, not a key: give the path with --%s (DELIVER_SIGNING_KEY_FILE)", flag, flagSigningFile)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	return key, nil
}

// isFile tells whether s is the path of a regular file.
func isFile(s string) bool {
	if strings.ContainsAny(s, "\n\x00") {
		return false
	}
	fi, err := os.Stat(s)
	return err == nil && fi.Mode().IsRegular()
}

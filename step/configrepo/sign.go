package configrepo

import (
	"fmt"
	"io"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Signer signs a commit: it returns the armored signature of message, the commit encoded
// without its signature, as git stores it in the gpgsig header (an OpenPGP or an SSH
// signature). It is go-git's Signer; step/signing's Key is one.
type Signer interface {
	Sign(message io.Reader) ([]byte, error)
}

// sign signs c with signer (nothing when signer is nil), as `git commit -S` does: over the
// commit's encoding without a signature, which is what `git verify-commit` checks.
func sign(c *object.Commit, signer Signer) error {
	if signer == nil {
		return nil
	}
	unsigned := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(unsigned); err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	rd, err := unsigned.Reader()
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	defer rd.Close()
	sig, err := signer.Sign(rd)
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	c.PGPSignature = string(sig)
	return nil
}

// committer is the commit's committer: author, with the name and e-mail Options give.
func (r *Repo) committer(author object.Signature) object.Signature {
	c := author
	if r.opts.CommitterName != "" {
		c.Name = r.opts.CommitterName
	}
	if r.opts.CommitterEmail != "" {
		c.Email = r.opts.CommitterEmail
	}
	return c
}

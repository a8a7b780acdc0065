package configrepo_test

import (
	"context"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/signtest"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/signing"
)

// TestSignedCommits: with a Signer every commit Update pushes is signed, the first attempt's
// and the one made again on a new tip after a lost race, and the real git CLI verifies each
// (SSH keys against an allowed-signers file, OpenPGP keys against a keyring holding the public
// key). The committer is the one Options name; the author stays the caller's.
func TestSignedCommits(t *testing.T) {
	t.Parallel()
	keys := []signtest.Key{
		signtest.SSH(t, "ed25519", "s3cret passphrase", "bot@example.com"),
		signtest.SSH(t, "ecdsa", "", "bot@example.com"),
		signtest.SSH(t, "rsa", "", "bot@example.com"),
		signtest.OpenPGP(t, "ed25519", "s3cret passphrase", "Deliver Bot", "bot@example.com"),
		signtest.OpenPGP(t, "rsa2048", "", "Deliver Bot", "bot@example.com"),
	}
	keys[3].Name, keys[4].Name = "openpgp-ed25519", "openpgp-rsa2048"
	// other is a key that did not sign: verifying against it must fail, or the check proves
	// nothing.
	other := map[string]signtest.Key{
		"ssh":     signtest.SSH(t, "ed25519", "", "bot@example.com"),
		"openpgp": signtest.OpenPGP(t, "ed25519", "", "Deliver Bot", "bot@example.com"),
	}
	for _, k := range keys {
		t.Run(k.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			key, err := signing.Parse([]byte(k.Private), []byte(k.Passphrase))
			if err != nil {
				t.Fatal(err)
			}
			gs := testenv.NewGitServer(t)
			url := newRepo(t, gs, "signed")
			o := opts(gs, url)
			o.Signer, o.CommitterName, o.CommitterEmail = key, "Deliver Bot", "bot@example.com"

			// Two clones of the same tip: the second one's first push loses the race to the
			// first's and is made again, signed again, on the new tip.
			first, err := configrepo.Clone(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer first.Close()
			second, err := configrepo.Clone(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer second.Close()
			r1, err := first.Update(ctx, author, appendLine("list.txt", "web=1.0"))
			if err != nil {
				t.Fatal(err)
			}
			r2, err := second.Update(ctx, author, appendLine("list.txt", "api=2.0"))
			if err != nil {
				t.Fatal(err)
			}
			if r2.Attempts < 2 || r2.Parent != r1.Commit {
				t.Fatalf("the second update did not retry on the first's commit: %+v (first %s)", r2, r1.Commit)
			}
			for _, c := range []string{r1.Commit, r2.Commit} {
				signtest.RequireVerified(t, gs.BareDir("signed"), c, k)
				if v := signtest.Verify(t, gs.BareDir("signed"), c, other[k.Format]); v.VerifyErr == nil || v.Status == "G" {
					t.Errorf("commit %s verifies against a key that did not sign it: %%G?=%s\n%s", c, v.Status, v.Output)
				}
			}
			log, err := gs.Log("signed", "main")
			if err != nil {
				t.Fatal(err)
			}
			c := log[0]
			if c.Committer.Name != "Deliver Bot" || c.Committer.Email != "bot@example.com" || c.Author.Name != author.Name || c.Author.Email != author.Email {
				t.Errorf("author %s <%s>, committer %s <%s>: want the caller's author and the committer of Options",
					c.Author.Name, c.Author.Email, c.Committer.Name, c.Committer.Email)
			}
			wantArmor := map[string]string{"ssh": "-----BEGIN SSH SIGNATURE-----", "openpgp": "-----BEGIN PGP SIGNATURE-----"}[k.Format]
			if !strings.HasPrefix(c.PGPSignature, wantArmor) {
				t.Errorf("gpgsig header starts %.40q, want %s", c.PGPSignature, wantArmor)
			}
		})
	}
}

// TestUnsignedWithoutSigner: without a Signer commits carry no signature, and the committer is
// the author.
func TestUnsignedWithoutSigner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "unsigned")
	repo, err := configrepo.Clone(ctx, opts(gs, url))
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0"))
	if err != nil {
		t.Fatal(err)
	}
	k := signtest.SSH(t, "ed25519", "", "bot@example.com")
	if v := signtest.Verify(t, gs.BareDir("unsigned"), res.Commit, k); v.Status != "N" || v.VerifyErr == nil {
		t.Errorf("an unsigned commit: %%G?=%s, verify-commit: %v", v.Status, v.VerifyErr)
	}
	log, err := gs.Log("unsigned", "main")
	if err != nil {
		t.Fatal(err)
	}
	if c := log[0]; c.Committer.Name != author.Name || c.Committer.Email != author.Email || c.PGPSignature != "" {
		t.Errorf("committer %s <%s>, signature %q", c.Committer.Name, c.Committer.Email, c.PGPSignature)
	}
}

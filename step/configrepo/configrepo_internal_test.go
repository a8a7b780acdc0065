package configrepo

import (
	"testing"

	"github.com/go-git/go-git/v5/plumbing/object"
)

// TestHeaderSafe: a name or e-mail from CI can never break the commit header.
func TestHeaderSafe(t *testing.T) {
	t.Parallel()
	for in, want := range map[object.Signature]object.Signature{
		{Name: "Ada\nLovelace", Email: "ada@example.com"}:      {Name: "AdaLovelace", Email: "ada@example.com"},
		{Name: "Eve <eve@evil>", Email: "<eve@example.com>\r"}: {Name: "Eve eve@evil", Email: "eve@example.com"},
		{Name: "plain", Email: "p@example.com"}:                {Name: "plain", Email: "p@example.com"},
		{Name: "nul\x00", Email: " x@example.com "}:            {Name: "nul", Email: "x@example.com"},
	} {
		if got := headerSafe(in); got != want {
			t.Errorf("headerSafe(%q, %q) = %q, %q", in.Name, in.Email, got.Name, got.Email)
		}
	}
}

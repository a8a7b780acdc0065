package redact

import (
	"bytes"
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	t.Parallel()
	r := New("glpat-SECRETTOKEN123", "pw", "hunter2hunter2", "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END KEY-----")
	tests := []struct{ in, want string }{
		{"token glpat-SECRETTOKEN123 used", "token *** used"},
		{"pw is too short to be a secret", "pw is too short to be a secret"},
		{"clone https://oauth2:glpat-SECRETTOKEN123@gitlab.example.com/x.git", "clone https://***@gitlab.example.com/x.git"},
		{"https://user:other@host/p", "https://***@host/p"},
		{"a line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC of a key", "a line *** of a key"},
		{"no secret at all", "no secret at all"},
		{"hunter2hunter2hunter2hunter2", "******"},
	}
	for _, tt := range tests {
		if got := r.String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriterSplitSecret(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	w := New("s3cr3t-value").Writer(&out)
	for _, part := range []string{"start s3cr", "3t-val", "ue end\nnext ", "s3cr3t-value"} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "start *** end\nnext ***"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestErrorKeepsChain(t *testing.T) {
	t.Parallel()
	base := fs.ErrNotExist
	err := New("tok-123456").Error(errors.Join(errors.New("using tok-123456"), base))
	if strings.Contains(err.Error(), "tok-123456") {
		t.Fatalf("secret in %q", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("redacted error lost its chain")
	}
}

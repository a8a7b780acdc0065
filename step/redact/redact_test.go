package redact

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/url"
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

// TestEncodings: a secret is masked in the forms clients and servers turn it into: Basic auth's
// base64 of user:secret (every registered user), of :secret, secret: and the secret alone, in
// every base64 alphabet and padding, and percent-encoded, as given and trimmed.
func TestEncodings(t *testing.T) {
	t.Parallel()
	const secret = "tok/+=%?&:@en1"
	r := New(secret, " spaced-token\n")
	r.AddUsers("deliver-bot", "x-access-token")
	var forms []string
	for _, p := range []string{
		secret, ":" + secret, secret + ":", "deliver-bot:" + secret, "x-access-token:" + secret,
		"x-access-token: spaced-token\n", "x-access-token:spaced-token", "deliver-bot:spaced-token",
	} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			forms = append(forms, enc.EncodeToString([]byte(p)))
		}
	}
	forms = append(forms, url.QueryEscape(secret), url.PathEscape(secret), url.User(secret).String(), url.UserPassword("", secret).String()[1:])
	for _, f := range forms {
		for _, line := range []string{"Authorization: Basic " + f, f, "<pre>" + f + "</pre>", `{"auth":"` + f + `"}`} {
			if got := r.String(line); strings.Contains(got, f) {
				t.Errorf("String(%q) = %q: the encoded secret is still there", line, got)
			}
		}
	}
	// A user registered after the secret counts too.
	r.AddUsers("late-user")
	f := base64.StdEncoding.EncodeToString([]byte("late-user:" + secret))
	if got := r.String("Basic " + f); got != "Basic "+Mask {
		t.Errorf("String(Basic base64(late-user:secret)) = %q, want %q", got, "Basic "+Mask)
	}
	// Usernames alone are not secret.
	if got := r.String("user deliver-bot"); got != "user deliver-bot" {
		t.Errorf("a username was masked: %q", got)
	}
	// CI masking commands get the values, not the encodings.
	if got, want := r.Secrets(), []string{secret, "spaced-token"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Secrets() = %q, want %q", got, want)
	}
}

// Package redact keeps secrets out of everything deliver prints: logs, results, errors, CI
// summaries and report files. A Redactor holds the secret values of one run (tokens, passwords,
// private keys, kubeconfig credentials) and replaces each with "***", together with the forms a
// client or a server may turn it into: the base64 of user:secret as HTTP Basic auth sends it
// (for every username registered with AddUsers), of :secret, secret: and the secret alone, in
// standard and URL-safe base64, padded and not, and its percent-encoded forms (URL user-info,
// path and query). It also strips the user-info part of URLs (https://user:token@host/ ->
// https://***@host/), whatever the secret.
package redact

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Mask is what a secret is replaced with.
const Mask = "***"

// minLen is the shortest value treated as a secret: shorter ones ("a", "no") would mask
// ordinary words and are not credentials anyone should use.
const minLen = 4

// urlUserinfo matches the user-info of a URL: scheme://user[:password]@.
var urlUserinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s"']+@`)

// base64Encodings are the alphabets and paddings a secret may be encoded with.
var base64Encodings = []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding}

// Redactor replaces registered secrets in strings and streams. The zero value is not usable;
// use New. It is safe for concurrent use.
type Redactor struct {
	mu sync.RWMutex
	// values are the secrets as registered; users the usernames sent along with them.
	values, users []string
	// plain are the values, trimmed, and the lines of multi-line ones; masked is every string
	// replaced: plain and the encodings, longest first, so a secret containing another is
	// masked whole.
	plain, masked []string
}

// New returns a Redactor that masks the given secrets (empty and too-short values are ignored).
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add registers more secrets. A multi-line secret (a PEM key, a kubeconfig) is also registered
// line by line, so a single line of it is masked wherever it appears; a single-line one is also
// masked in its encoded forms (see the package doc).
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values = appendNew(r.values, secrets, func(s string) bool { return len(strings.TrimSpace(s)) >= minLen })
	r.rebuild()
}

// AddUsers registers usernames a client may send with the secrets in HTTP Basic auth, so that
// base64(user:secret) is masked too. The usernames themselves are not secret and stay visible.
func (r *Redactor) AddUsers(users ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users = appendNew(r.users, users, func(u string) bool { return u != "" })
	r.rebuild()
}

// appendNew appends to list the values of add that keep accepts and list does not hold yet.
func appendNew(list, add []string, keep func(string) bool) []string {
	for _, s := range add {
		found := false
		for _, have := range list {
			found = found || have == s
		}
		if !found && keep(s) {
			list = append(list, s)
		}
	}
	return list
}

// rebuild computes what is masked from the values and users. The caller holds r.mu.
func (r *Redactor) rebuild() {
	seen := map[string]bool{}
	var plain, masked []string
	add := func(s string) bool {
		if len(strings.TrimSpace(s)) < minLen || seen[s] {
			return false
		}
		seen[s] = true
		masked = append(masked, s)
		return true
	}
	for _, v := range r.values {
		trimmed := strings.TrimSpace(v)
		if add(trimmed) {
			plain = append(plain, trimmed)
		}
		if strings.ContainsAny(trimmed, "\r\n") {
			for _, line := range strings.FieldsFunc(v, func(c rune) bool { return c == '\n' || c == '\r' }) {
				// Whole key/cert lines, not "-----END-----" fragments.
				if line = strings.TrimSpace(line); len(line) >= 16 && add(line) {
					plain = append(plain, line)
				}
			}
			continue
		}
		// A client sends the value as it was given; the trimmed one is what a user meant.
		for _, form := range []string{v, trimmed} {
			for _, e := range encodings(form, r.users) {
				add(e)
			}
		}
	}
	sort.SliceStable(masked, func(i, j int) bool { return len(masked[i]) > len(masked[j]) })
	r.plain, r.masked = plain, masked
}

// encodings are the encoded forms of secret v: base64 (every alphabet and padding) of v, :v, v:
// and user:v for each user, and v percent-encoded as URL user-info, path and query.
func encodings(v string, users []string) []string {
	plain := []string{v, ":" + v, v + ":"}
	for _, u := range users {
		plain = append(plain, u+":"+v)
	}
	var out []string
	for _, p := range plain {
		for _, enc := range base64Encodings {
			out = append(out, enc.EncodeToString([]byte(p)))
		}
	}
	return append(out, url.User(v).String(), strings.TrimPrefix(url.UserPassword("", v).String(), ":"), url.PathEscape(v), url.QueryEscape(v))
}

// Secrets returns the registered secret values, trimmed, and the lines of multi-line ones, for
// CI masking commands; not their encodings, which only deliver's own output could hold and
// String masks.
func (r *Redactor) Secrets() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]string(nil), r.plain...)
}

// String returns s with every secret and every URL user-info masked.
func (r *Redactor) String(s string) string {
	if r == nil {
		return urlUserinfo.ReplaceAllString(s, "${1}"+Mask+"@")
	}
	r.mu.RLock()
	for _, secret := range r.masked {
		if strings.Contains(s, secret) {
			s = strings.ReplaceAll(s, secret, Mask)
		}
	}
	r.mu.RUnlock()
	return urlUserinfo.ReplaceAllString(s, "${1}"+Mask+"@")
}

// Error returns an error whose message is redacted and which still unwraps to err, so exit-code
// classification with errors.Is/As keeps working.
func (r *Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	msg := r.String(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Writer returns an io.Writer that redacts what it writes to w. It buffers until a newline so a
// secret split across two Write calls is still masked; call Flush (or write a final newline) to
// emit a trailing partial line.
func (r *Redactor) Writer(w io.Writer) *Writer {
	return &Writer{r: r, w: w}
}

// Writer is a line-buffered redacting writer. It is safe for concurrent use.
type Writer struct {
	r   *Redactor
	w   io.Writer
	mu  sync.Mutex
	buf []byte
}

// Write implements io.Writer. It reports len(p) written when every complete line reached the
// underlying writer.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	i := bytes.LastIndexByte(w.buf, '\n')
	if i < 0 {
		return len(p), nil
	}
	out := w.r.String(string(w.buf[:i+1]))
	rest := append([]byte(nil), w.buf[i+1:]...)
	w.buf = rest
	if _, err := io.WriteString(w.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes any buffered partial line.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	out := w.r.String(string(w.buf))
	w.buf = nil
	_, err := io.WriteString(w.w, out)
	return err
}

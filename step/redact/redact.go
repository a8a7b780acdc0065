// Package redact keeps secrets out of everything deliver prints: logs, results, errors, CI
// summaries and report files. A Redactor holds the secret values of one run (tokens, passwords,
// private keys, kubeconfig credentials) and replaces each with "***"; it also strips the
// user-info part of URLs (https://user:token@host/ -> https://***@host/), whatever the secret.
package redact

import (
	"bytes"
	"io"
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

// Redactor replaces registered secrets in strings and streams. The zero value is not usable;
// use New. It is safe for concurrent use.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string // longest first, so a secret containing another is masked whole
}

// New returns a Redactor that masks the given secrets (empty and too-short values are ignored).
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// Add registers more secrets. A multi-line secret (a PEM key, a kubeconfig) is also registered
// line by line, so a single line of it is masked wherever it appears.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, s := range r.secrets {
		seen[s] = true
	}
	add := func(s string) {
		s = strings.TrimSpace(s)
		if len(s) < minLen || seen[s] {
			return
		}
		seen[s] = true
		r.secrets = append(r.secrets, s)
	}
	for _, s := range secrets {
		add(s)
		if strings.ContainsAny(s, "\r\n") {
			for _, line := range strings.FieldsFunc(s, func(c rune) bool { return c == '\n' || c == '\r' }) {
				if len(strings.TrimSpace(line)) >= 16 { // whole key/cert lines, not "-----END-----" fragments
					add(line)
				}
			}
		}
	}
	sort.SliceStable(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

// Secrets returns the registered secret values (for CI masking commands).
func (r *Redactor) Secrets() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]string(nil), r.secrets...)
}

// String returns s with every secret and every URL user-info masked.
func (r *Redactor) String(s string) string {
	if r == nil {
		return urlUserinfo.ReplaceAllString(s, "${1}"+Mask+"@")
	}
	r.mu.RLock()
	for _, secret := range r.secrets {
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

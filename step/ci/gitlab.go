package ci

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// GitLab reports in GitLab CI: a collapsible log section per phase, a red final error line,
// and a dotenv report (DELIVER_CHANGED, DELIVER_COMMIT_SHA, DELIVER_COMMIT_URL,
// DELIVER_IMAGE_REF, DELIVER_IMAGE_DIGEST, DELIVER_URL, DELIVER_ROLLOUT) for `artifacts: reports: dotenv`, from which
// `environment: url: $DELIVER_URL` and later jobs read. GitLab masks only some variables, so
// everything written here has already passed deliver's own redaction.
type GitLab struct {
	w       io.Writer
	dotenv  string
	redact  func(string) string
	mu      sync.Mutex
	timings []PhaseTiming
	now     func() time.Time
	seq     int
}

// NewGitLab returns a GitLab reporter writing to w and the dotenv report to dotenvPath ("" for
// none). redact is applied to every dotenv value.
func NewGitLab(w io.Writer, dotenvPath string, redact func(string) string) *GitLab {
	return &GitLab{w: w, dotenv: dotenvPath, redact: redact, now: time.Now}
}

// Phase implements Reporter with a section.
func (g *GitLab) Phase(name, title string) func(error) {
	start := g.now()
	g.mu.Lock()
	g.seq++
	id := fmt.Sprintf("deliver_%s_%d", name, g.seq)
	g.mu.Unlock()
	fmt.Fprintf(g.w, "\x1b[0Ksection_start:%d:%s\r\x1b[0K\x1b[36;1m%s\x1b[0m: %s\n", start.Unix(), id, name, title)
	return func(err error) {
		end := g.now()
		d := end.Sub(start)
		g.mu.Lock()
		g.timings = append(g.timings, PhaseTiming{Name: name, Duration: d, Failed: err != nil})
		g.mu.Unlock()
		status := "done"
		if err != nil {
			status = "failed"
		}
		fmt.Fprintf(g.w, "%s %s in %s\n", name, status, round(d))
		fmt.Fprintf(g.w, "\x1b[0Ksection_end:%d:%s\r\x1b[0K\n", end.Unix(), id)
	}
}

// Logf implements Reporter.
func (g *GitLab) Logf(format string, args ...any) {
	fmt.Fprintf(g.w, "%s\n", strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// Warnf implements Reporter in yellow.
func (g *GitLab) Warnf(format string, args ...any) {
	fmt.Fprintf(g.w, "\x1b[33;1mwarning: %s\x1b[0m\n", strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// Timings implements Reporter.
func (g *GitLab) Timings() []PhaseTiming {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]PhaseTiming(nil), g.timings...)
}

// Finish implements Reporter: the dotenv report, written on failure too, so later jobs see
// DELIVER_CHANGED=false. (The final error line, in red, is deliver's last line; see step.Main.)
func (g *GitLab) Finish(o Outcome) error {
	if g.dotenv == "" {
		return nil
	}
	var b strings.Builder
	for _, kv := range outputs(o) {
		key := "DELIVER_" + strings.ToUpper(strings.ReplaceAll(kv[0], "-", "_"))
		if kv[0] == "image" {
			// Not DELIVER_IMAGE: a later job given this report would read it as --image.
			key = "DELIVER_IMAGE_REF"
		}
		v := g.redact(kv[1])
		if strings.ContainsAny(v, "\n\r") {
			return errors.New("dotenv value for " + key + " spans lines")
		}
		fmt.Fprintf(&b, "%s=%s\n", key, v)
	}
	if err := os.WriteFile(g.dotenv, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing the dotenv report %s: %w", g.dotenv, err)
	}
	return nil
}

// fileLine extracts a file and line from an error chain.
func fileLine(err error) (string, int) {
	var fl FileLiner
	if errors.As(err, &fl) {
		return fl.FileLine()
	}
	return "", 0
}

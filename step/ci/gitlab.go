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
// and a dotenv report for `artifacts: reports: dotenv`, from which `environment: url:
// $DELIVER_URL` and later jobs read: DELIVER_CHANGED, DELIVER_COMMIT_SHA, DELIVER_COMMIT_URL,
// DELIVER_IMAGE_REF, DELIVER_IMAGE_DIGEST, DELIVER_URL and DELIVER_ROLLOUT, and the same
// values again under the job's own prefix (DELIVER_STAGING_COMMIT_SHA; see Dotenv), which
// tell several deliver jobs apart in a later job that receives all their reports. GitLab
// masks only some variables, so everything written here has already passed deliver's own
// redaction.
type GitLab struct {
	phases
	w      io.Writer
	dotenv Dotenv
	redact func(string) string
	seqMu  sync.Mutex
	seq    int
}

// Dotenv says where and how the GitLab reporter writes its dotenv report.
type Dotenv struct {
	// Path is the file; "" writes none.
	Path string
	// Prefix is the job's own prefix of the keys (STAGING_ gives STAGING_COMMIT_SHA); ""
	// means DELIVER_<ENVIRONMENT>_, the environment upper-cased with every character other
	// than a letter or digit made an underscore.
	Prefix string
	// Reserved reports the variables deliver reads as flags. A key that is one of them is
	// left out with a warning: a later deliver job given the report would take it for a flag.
	Reserved func(key string) bool
}

// NewGitLab returns a GitLab reporter writing to w and the dotenv report as d says. redact is
// applied to every dotenv value.
func NewGitLab(w io.Writer, d Dotenv, redact func(string) string) *GitLab {
	return &GitLab{w: w, dotenv: d, redact: redact, phases: phases{now: time.Now}}
}

// DotenvPrefix is the default prefix of a job's own dotenv keys: DELIVER_<ENVIRONMENT>_, or
// "" without an environment.
func DotenvPrefix(environment string) string {
	if environment == "" {
		return ""
	}
	return "DELIVER_" + strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, environment) + "_"
}

// Phase implements Reporter with a section.
func (g *GitLab) Phase(name, title string) func(error) {
	start, end := g.start(name)
	g.seqMu.Lock()
	g.seq++
	id := fmt.Sprintf("deliver_%s_%d", name, g.seq)
	g.seqMu.Unlock()
	fmt.Fprintf(g.w, "\x1b[0Ksection_start:%d:%s\r\x1b[0K\x1b[36;1m%s\x1b[0m: %s\n", start.Unix(), id, name, title)
	return func(err error) {
		d, endTime := end(err)
		status := "done"
		if err != nil {
			status = "failed"
		}
		fmt.Fprintf(g.w, "%s %s in %s\n", name, status, round(d))
		fmt.Fprintf(g.w, "\x1b[0Ksection_end:%d:%s\r\x1b[0K\n", endTime.Unix(), id)
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

// Finish implements Reporter: a line linking the config repo's file the error is about, and
// the dotenv report, written on failure too, so later jobs see DELIVER_CHANGED=false. (The
// final error line, in red, is deliver's last line; see step.Main.)
func (g *GitLab) Finish(o Outcome) error {
	if o.Err != nil && o.ErrAt.URL != "" {
		fmt.Fprintf(g.w, "the error is in %s of the config repo: %s\n", o.ErrAt.Path, o.ErrAt.URL)
	}
	if g.dotenv.Path == "" {
		return nil
	}
	prefix := g.dotenv.Prefix
	if prefix == "" {
		prefix = DotenvPrefix(o.Environment)
	}
	var b strings.Builder
	seen := map[string]bool{}
	for _, p := range []string{"DELIVER_", prefix} {
		if p == "" {
			continue
		}
		for _, kv := range outputs(o) {
			name := strings.ToUpper(strings.ReplaceAll(kv[0], "-", "_"))
			if kv[0] == "image" {
				// Not DELIVER_IMAGE: a later job given this report would read it as --image.
				name = "IMAGE_REF"
			}
			key := p + name
			if seen[key] {
				continue
			}
			seen[key] = true
			if g.dotenv.Reserved != nil && g.dotenv.Reserved(key) {
				g.Warnf("dotenv report: %s is left out: a later deliver job would read it as one of its own settings (choose another prefix with DELIVER_DOTENV_PREFIX)", key)
				continue
			}
			v := g.redact(kv[1])
			if strings.ContainsAny(v, "\n\r") {
				return errors.New("dotenv value for " + key + " spans lines")
			}
			fmt.Fprintf(&b, "%s=%s\n", key, v)
		}
	}
	if err := os.WriteFile(g.dotenv.Path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("writing the dotenv report %s: %w", g.dotenv.Path, err)
	}
	return nil
}

package ci

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sethvargo/go-githubactions"
)

// GitHub reports in GitHub Actions: a log group per phase, ::add-mask:: for every secret before
// anything else is printed, an ::error:: annotation (with file and line when known) for the
// failure, step outputs in GITHUB_OUTPUT and a markdown job summary in GITHUB_STEP_SUMMARY.
// It never panics: a log line that cannot be written is lost, as with the other reporters, and
// a file that cannot be written is Finish's error.
type GitHub struct {
	w       io.Writer
	getenv  func(string) string
	mu      sync.Mutex
	timings []PhaseTiming
	now     func() time.Time
}

// NewGitHub returns a GitHub reporter writing workflow commands and logs to w (deliver's
// redacted stderr; the runner reads commands from both streams). raw is the unredacted stream
// the masks go to: an ::add-mask:: line must carry the value it masks, and the runner hides it.
func NewGitHub(w, raw io.Writer, getenv func(string) string, secrets []string) *GitHub {
	g := &GitHub{w: w, getenv: getenv, now: time.Now}
	for _, s := range secrets {
		command(raw, "add-mask", nil, s)
	}
	return g
}

// command writes a workflow command (escaped by go-githubactions) to w. A write error is
// dropped like any log line's: the runner's stream is gone.
func command(w io.Writer, name string, props githubactions.CommandProperties, msg string) {
	cmd := githubactions.Command{Name: name, Message: msg, Properties: props}
	_, _ = fmt.Fprintln(w, cmd.String())
}

// Phase implements Reporter with a log group.
func (g *GitHub) Phase(name, title string) func(error) {
	start := g.now()
	command(g.w, "group", nil, name+": "+title)
	return func(err error) {
		d := g.now().Sub(start)
		g.mu.Lock()
		g.timings = append(g.timings, PhaseTiming{Name: name, Duration: d, Failed: err != nil})
		g.mu.Unlock()
		status := "done"
		if err != nil {
			status = "failed"
		}
		fmt.Fprintf(g.w, "%s %s in %s\n", name, status, round(d))
		command(g.w, "endgroup", nil, "")
	}
}

// Logf implements Reporter.
func (g *GitHub) Logf(format string, args ...any) {
	fmt.Fprintf(g.w, "%s\n", strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// Warnf implements Reporter with a warning annotation.
func (g *GitHub) Warnf(format string, args ...any) {
	command(g.w, "warning", nil, fmt.Sprintf(format, args...))
}

// Timings implements Reporter.
func (g *GitHub) Timings() []PhaseTiming {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]PhaseTiming(nil), g.timings...)
}

// FileLiner is implemented by errors that point at a line of a file (YAML errors).
type FileLiner interface {
	FileLine() (file string, line int)
}

// Finish implements Reporter: the error annotation, the step outputs and the job summary. An
// output or summary file that cannot be written is an error naming it (both are tried).
func (g *GitHub) Finish(o Outcome) error {
	if o.Err != nil {
		fields := githubactions.CommandProperties{"title": "deliver " + o.Command + " failed"}
		if file, line := fileLine(o.Err); file != "" {
			fields["file"] = file
			if line > 0 {
				fields["line"] = fmt.Sprint(line)
			}
		}
		command(g.w, "error", fields, o.Err.Error())
	}
	var errs []error
	if path := g.getenv("GITHUB_OUTPUT"); path != "" {
		var b strings.Builder
		for _, kv := range outputs(o) {
			if err := writeOutput(&b, kv[0], kv[1]); err != nil {
				return err
			}
		}
		if err := appendFile(path, b.String()); err != nil {
			errs = append(errs, fmt.Errorf("writing the step outputs to GITHUB_OUTPUT: %w", err))
		}
	}
	if path := g.getenv("GITHUB_STEP_SUMMARY"); path != "" {
		if err := appendFile(path, Summary(o)+"\n"); err != nil {
			errs = append(errs, fmt.Errorf("writing the job summary to GITHUB_STEP_SUMMARY: %w", err))
		}
	}
	return errors.Join(errs...)
}

// writeOutput writes one step output in the runner's multi-line form, name<<DELIMITER, value,
// DELIMITER, with a random delimiter (as actions/toolkit does) that the value cannot end early.
func writeOutput(b *strings.Builder, name, value string) error {
	delim := "ghadelimiter_" + rand.Text()
	if strings.Contains(name, delim) || strings.Contains(value, delim) {
		return fmt.Errorf("step output %s: the value holds its delimiter", name)
	}
	fmt.Fprintf(b, "%s<<%s\n%s\n%s\n", name, delim, value, delim)
	return nil
}

// appendFile appends s to the file at path (a runner's file command), creating it if needed.
// Its errors name the file (*fs.PathError).
func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// outputs are the step outputs, in action.yml's names.
func outputs(o Outcome) [][2]string {
	image := ""
	if len(o.Images) > 0 {
		_, image, _ = strings.Cut(o.Images[0], "=")
	}
	sha := o.CommitSHA
	if strings.Trim(sha, "0") == "" {
		sha = ""
	}
	return [][2]string{
		{"changed", fmt.Sprint(o.Changed)},
		{"commit-sha", sha},
		{"commit-url", o.CommitURL},
		{"image", image},
		{"image-digest", o.ImageDigest},
		{"url", o.URL},
		{"rollout", o.Rollout},
	}
}

// Summary renders the outcome as a markdown table (GitHub job summary).
func Summary(o Outcome) string {
	var b strings.Builder
	status := "succeeded"
	if o.Err != nil {
		status = "failed"
	}
	fmt.Fprintf(&b, "### deliver %s %s\n\n", o.Command, status)
	b.WriteString("| | |\n|---|---|\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "| %s | %s |\n", k, strings.ReplaceAll(v, "|", "\\|"))
		}
	}
	row("Environment", o.Environment)
	for _, img := range o.Images {
		row("Image", "`"+img+"`")
	}
	commit := o.CommitSHA
	if strings.Trim(commit, "0") == "" {
		commit = ""
	}
	if commit != "" && o.CommitURL != "" {
		commit = fmt.Sprintf("[%s](%s)", commit[:min(12, len(commit))], o.CommitURL)
	}
	row("Config commit", commit)
	row("Changed", fmt.Sprint(o.Changed))
	if o.Rollout != "" {
		row("Objects applied / pruned", fmt.Sprintf("%d / %d", o.Applied, o.Pruned))
		row("Rollout", o.Rollout)
	}
	row("URL", o.URL)
	if len(o.Phases) > 0 {
		var parts []string
		for _, p := range o.Phases {
			mark := ""
			if p.Failed {
				mark = " (failed)"
			}
			parts = append(parts, fmt.Sprintf("%s %s%s", p.Name, round(p.Duration), mark))
		}
		row("Phases", strings.Join(parts, ", "))
	}
	if o.Err != nil {
		fmt.Fprintf(&b, "\n```\n%s\n```\n", o.Err.Error())
	}
	return b.String()
}

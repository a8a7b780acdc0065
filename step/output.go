package step

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
)

// withReporter wraps a command: it chooses the reporter, runs the command, prints the one-line
// result on stdout and hands the outcome to the reporter.
func (r *runner) withReporter(cmd func(context.Context, *cli.Context) (ci.Outcome, error)) cli.ActionFunc {
	return r.wrap(cmd, true)
}

// withReporterQuiet is withReporter for commands whose stdout is their own (history, diff).
func (r *runner) withReporterQuiet(cmd func(context.Context, *cli.Context) (ci.Outcome, error)) cli.ActionFunc {
	return r.wrap(cmd, false)
}

func (r *runner) wrap(cmd func(context.Context, *cli.Context) (ci.Outcome, error), printResult bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		r.registerSecrets(c)
		if r.rep == nil {
			r.rep = r.reporter(c)
		}
		out, err := cmd(c.Context, c)
		out.Phases = r.rep.Timings()
		out = r.redactOutcome(out, err)
		if err == nil && printResult {
			fmt.Fprintln(r.stdout, resultLine(out))
		}
		if ferr := r.rep.Finish(out); ferr != nil {
			if err == nil {
				return reportError{fmt.Errorf("writing CI outputs: %w", ferr)}
			}
			// The command's own failure decides the exit code; this one is still said.
			r.rep.Warnf("writing CI outputs: %v", ferr)
		}
		return err
	}
}

// resultLine is the one-line result printed on stdout.
func resultLine(o ci.Outcome) string {
	parts := []string{o.Command}
	if o.Environment != "" {
		parts = append(parts, "env="+o.Environment)
	}
	parts = append(parts, fmt.Sprintf("changed=%t", o.Changed))
	if o.CommitSHA != "" && o.CommitSHA != strings.Repeat("0", 40) {
		parts = append(parts, "commit="+o.CommitSHA)
	}
	parts = append(parts, o.Images...)
	if o.Rollout != "" {
		parts = append(parts, fmt.Sprintf("applied=%d", o.Applied))
		if o.Pruned > 0 {
			parts = append(parts, fmt.Sprintf("pruned=%d", o.Pruned))
		}
		parts = append(parts, "rollout="+o.Rollout)
	}
	return strings.Join(parts, " ")
}

// commitURL links a config commit when the repo is on a known forge (GitHub, GitLab and
// anything else that serves /-/commit/ or /commit/); plain git servers get no link.
func commitURL(repoURL, sha string) string {
	if sha == "" || !strings.HasPrefix(repoURL, "https://") {
		return ""
	}
	base := strings.TrimSuffix(strings.TrimSuffix(repoURL, "/"), ".git")
	switch {
	case strings.Contains(base, "github"):
		return base + "/commit/" + sha
	case strings.Contains(base, "gitlab"):
		return base + "/-/commit/" + sha
	}
	return ""
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// redactOutcome masks secrets in everything a reporter may write to a file (GitHub outputs and
// summary, GitLab dotenv), which does not pass through the redacting writers.
func (r *runner) redactOutcome(o ci.Outcome, err error) ci.Outcome {
	red := r.redactor.String
	o.CommitURL, o.URL, o.ImageDigest = red(o.CommitURL), red(o.URL), red(o.ImageDigest)
	for i := range o.Images {
		o.Images[i] = red(o.Images[i])
	}
	o.Err = r.redactor.Error(err)
	return o
}

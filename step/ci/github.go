package ci

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sethvargo/go-githubactions"
)

// GitHub reports in GitHub Actions: a log group per phase, ::add-mask:: for every secret before
// anything else is printed, an ::error:: annotation (with file and line when known) for the
// failure, step outputs in GITHUB_OUTPUT and a markdown job summary in GITHUB_STEP_SUMMARY.
// It never panics: a log line that cannot be written is lost, as with the other reporters, and
// a file that cannot be written is Finish's error.
type GitHub struct {
	phases
	w      io.Writer
	getenv func(string) string
}

// NewGitHub returns a GitHub reporter writing workflow commands and logs to w (deliver's
// redacted stderr; the runner reads commands from both streams). raw is the unredacted stream
// the masks go to: an ::add-mask:: line must carry the value it masks, and the runner hides it.
func NewGitHub(w, raw io.Writer, getenv func(string) string, secrets []string) *GitHub {
	g := &GitHub{w: w, getenv: getenv, phases: phases{now: time.Now}}
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
	_, end := g.start(name)
	command(g.w, "group", nil, name+": "+title)
	return func(err error) {
		d, _ := end(err)
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

// FileLiner is implemented by errors that point at a line of a file (YAML errors).
type FileLiner interface {
	FileLine() (file string, line int)
}

// Finish implements Reporter: the error annotation, the step outputs and the job summary. An
// output or summary file that cannot be written is an error naming it (both are tried).
//
// The annotation names the file and line only when the config repo is the workflow's own
// repository: GitHub shows an annotation's file as a file of that repository, where a path of
// another repo would point at the wrong file or none. The link to the file in the config repo
// follows the message instead, and the job summary links it too.
func (g *GitHub) Finish(o Outcome) error {
	if o.Err != nil {
		fields := githubactions.CommandProperties{"title": "deliver " + o.Command + " failed"}
		msg := o.Err.Error()
		if at := o.ErrAt; at.Path != "" {
			if at.InSourceRepo {
				fields["file"] = at.Path
				if at.Line > 0 {
					fields["line"] = fmt.Sprint(at.Line)
				}
			}
			if at.URL != "" {
				msg += "\nin the config repo: " + at.URL
			}
		}
		command(g.w, "error", fields, msg)
	}
	var errs []error
	if path := g.getenv("GITHUB_OUTPUT"); path != "" {
		var b strings.Builder
		images, err := json.Marshal(o.ImageList())
		if err != nil {
			return fmt.Errorf("encoding the images output: %w", err)
		}
		for _, kv := range append(outputs(o), [2]string{"images", string(images)}, [2]string{"diff", o.Diff}) {
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

// outputs are the single-line outputs, in action.yml's names: the GitHub step outputs (with
// images and diff) and the GitLab dotenv variables.
func outputs(o Outcome) [][2]string {
	image := ""
	if len(o.Images) > 0 {
		_, image, _ = strings.Cut(o.Images[0], "=")
	}
	return [][2]string{
		{"changed", fmt.Sprint(o.Changed)},
		{"commit-sha", commitSHA(o)},
		{"commit-url", o.CommitURL},
		{"image", image},
		{"image-digest", o.ImageDigest},
		{"url", o.URL},
		{"rollout", o.Rollout},
		{"pull-request-url", o.PullRequestURL},
		{"pull-request-number", prNumber(o.PullRequestNumber)},
	}
}

func prNumber(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprint(n)
}

// maxSummaryObjects is how many objects the summary's rollout table lists.
const maxSummaryObjects = 100

// Summary renders the outcome as markdown (GitHub job summary): a heading that says how the
// run ended (a dry run says so), each image before and after, a table of the environment,
// the config commit, the pipeline (source commit, run, trigger and who), the rollout and the
// phases, the rollout per object, a dry run's overlay diff, and the error.
func Summary(o Outcome) string {
	var b strings.Builder
	switch {
	case o.Err != nil && o.DryRun:
		fmt.Fprintf(&b, "### deliver %s dry run failed\n\n", o.Command)
	case o.Err != nil:
		fmt.Fprintf(&b, "### deliver %s failed\n\n", o.Command)
	case o.DryRun:
		fmt.Fprintf(&b, "### deliver %s dry run: nothing was pushed or applied\n\n", o.Command)
	default:
		fmt.Fprintf(&b, "### deliver %s succeeded\n\n", o.Command)
	}
	if imgs := o.ImageList(); len(imgs) > 0 {
		after := "After"
		if o.DryRun {
			after = "After (dry run)"
		}
		fmt.Fprintf(&b, "| Image | Before | %s |\n|---|---|---|\n", after)
		for _, img := range imgs {
			before := "(none)"
			if img.Previous != "" {
				before = code(img.Previous)
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(img.Name), before, code(img.Image))
		}
		b.WriteString("\n")
	}
	b.WriteString("| | |\n|---|---|\n")
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "| %s | %s |\n", k, v)
		}
	}
	row("Environment", cell(o.Environment))
	row("Config commit", link(short(commitSHA(o)), o.CommitURL))
	if o.DryRun {
		row("Would change", fmt.Sprint(o.Changed))
	} else {
		row("Changed", fmt.Sprint(o.Changed))
	}
	row("Source commit", link(short(o.Run.Commit), o.Run.CommitURL))
	row("Pipeline", link(o.Run.PipelineURL, o.Run.PipelineURL))
	if t := string(o.Run.Trigger); t != "" {
		if o.Run.Event != "" {
			t += " (" + o.Run.Event + ")"
		}
		if o.Run.Actor != "" {
			t += " by " + o.Run.Actor
		}
		row("Trigger", cell(t))
	}
	switch {
	case o.DryRun && o.Rollout != "":
		row("Objects the server would apply / prune", fmt.Sprintf("%d / %d", o.Applied, o.Pruned))
	case o.Rollout != "":
		row("Objects applied / pruned", fmt.Sprintf("%d / %d", o.Applied, o.Pruned))
		row("Rollout", cell(o.Rollout))
	}
	row("URL", cell(o.URL))
	if len(o.Phases) > 0 {
		var parts []string
		for _, p := range o.Phases {
			mark := ""
			if p.Failed {
				mark = " (failed)"
			}
			parts = append(parts, fmt.Sprintf("%s %s%s", p.Name, round(p.Duration), mark))
		}
		row("Phases", cell(strings.Join(parts, ", ")))
	}
	if at := o.ErrAt; o.Err != nil && at.Path != "" {
		where := at.Path
		if at.Line > 0 {
			where += fmt.Sprintf(":%d", at.Line)
		}
		row("Error in", link(where, at.URL))
	}
	if len(o.Objects) > 0 {
		title := "Rollout"
		if o.DryRun {
			title = "Server-side dry run"
		}
		fmt.Fprintf(&b, "\n<details><summary>%s: %d object(s)</summary>\n\n| Object | Apply | Status |\n|---|---|---|\n", title, len(o.Objects))
		for i, obj := range o.Objects {
			if i == maxSummaryObjects {
				fmt.Fprintf(&b, "| … and %d more | | |\n", len(o.Objects)-i)
				break
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(obj.Object), cell(obj.Action), cell(obj.Status))
		}
		b.WriteString("\n</details>\n")
	}
	if o.DryRun && o.Diff != "" {
		fmt.Fprintf(&b, "\n#### Overlay diff\n\n%s\n", fenced("diff", o.Diff))
	}
	if o.Err != nil {
		fmt.Fprintf(&b, "\n%s\n", fenced("", o.Err.Error()))
	}
	return b.String()
}

// cell escapes a value for a markdown table cell: pipes, and line breaks that would end the row.
func cell(s string) string {
	return strings.NewReplacer("|", "\\|", "\r\n", "<br>", "\n", "<br>", "\r", "<br>").Replace(s)
}

// code renders s as inline code in a table cell.
func code(s string) string {
	if s == "" || strings.Contains(s, "`") {
		return cell(s)
	}
	return "`" + cell(s) + "`"
}

// link renders a markdown link, or the text alone without a URL.
func link(text, url string) string {
	if url == "" || text == "" {
		return cell(text)
	}
	text = strings.NewReplacer("[", "\\[", "]", "\\]").Replace(cell(text))
	return "[" + text + "](" + strings.NewReplacer("(", "%28", ")", "%29", " ", "%20", "|", "%7C").Replace(url) + ")"
}

// fenced renders s as a fenced code block whose fence is longer than any run of backticks in it.
func fenced(lang, s string) string {
	fence := "```"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	return fence + lang + "\n" + strings.TrimRight(s, "\n") + "\n" + fence
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

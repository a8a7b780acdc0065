// output.go owns what a run prints and reports: the action wrapper every command runs in,
// error explanations, the result line and links to the config repo's forge.

package step

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
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
		r.hints = newHints(r.ci, append(append([]cli.Flag(nil), c.Command.Flags...), c.App.Flags...))
		inputs, inputsErr := r.actionInputs(c)
		r.registerSecrets(c) // the inputs' values too, before the reporter masks them
		if r.rep == nil {
			r.rep = r.reporter(c)
		}
		if _, ok := r.rep.(hintReporter); !ok {
			r.rep = hintReporter{Reporter: r.rep, hints: r.hints}
		}
		inputs(r.rep)
		out, err := ci.Outcome{Command: c.Command.Name}, inputsErr
		if err == nil {
			err = validDotenvPrefix(c.String(flagDotenvPrefix))
		}
		if err == nil {
			out, err = cmd(c.Context, c)
		}
		out.Phases = r.rep.Timings()
		err = r.explain(err)
		out = r.complete(c, out, err)
		out = r.redactOutcome(out, err)
		if err == nil && printResult {
			fmt.Fprintln(r.stdout, resultLine(out))
		}
		ferr := r.rep.Finish(out)
		if path := c.String(flagReport); path != "" {
			ferr = errors.Join(ferr, ci.WriteReport(r.path(path), out))
		}
		if ferr != nil {
			if err == nil {
				return reportError{fmt.Errorf("writing CI outputs: %w", ferr)}
			}
			// The command's own failure decides the exit code; this one is still said.
			r.rep.Warnf("writing CI outputs: %v", ferr)
		}
		return err
	}
}

// explain rewrites a command's error for the people who read it: paths in the temporary
// clone become paths in the config repo, and flags become the options the user sets where
// deliver runs (hints). The error's chain, and so its exit code, stays as it was.
func (r *runner) explain(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if r.checkout != nil {
		for _, root := range r.checkout.roots {
			kustomize.RootRelative(root, err) // a kustomization file's error: its path, for annotations
		}
		msg = err.Error()
		for _, root := range r.checkout.roots {
			msg = strings.ReplaceAll(msg, root+string(filepath.Separator), "")
			msg = strings.ReplaceAll(msg, root, ".")
		}
	}
	msg = r.hints.rewrite(msg)
	if msg == err.Error() {
		return err
	}
	return explainedError{msg: msg, err: err}
}

// explainedError is an error with its message rewritten by explain.
type explainedError struct {
	msg string
	err error
}

func (e explainedError) Error() string { return e.msg }
func (e explainedError) Unwrap() error { return e.err }

// complete adds to a command's outcome what the run knows around it: the pipeline and the
// trigger the policy was checked against, the config commit's link, and where in the config
// repo the error points.
func (r *runner) complete(c *cli.Context, out ci.Outcome, err error) ci.Outcome {
	out.Run = r.ci
	if t, _, terr := r.trigger(c); terr == nil && t != "" {
		out.Run.Trigger = t
	}
	if out.Command == "rollback" {
		out.Run.Trigger = ci.TriggerManual
	}
	if r.checkout == nil {
		return out
	}
	out.CommitURL = r.checkout.forge.commit(out.CommitSHA)
	var fl ci.FileLiner
	if errors.As(err, &fl) {
		if file, line := fl.FileLine(); file != "" && !filepath.IsAbs(file) {
			out.ErrAt = ci.FileRef{
				Path: file, Line: line,
				URL:          r.checkout.forge.file(r.checkout.head, file, line),
				InSourceRepo: r.checkout.forge.is(r.ci.SourceRepo),
			}
		}
	}
	return out
}

// checkout is what the report needs of a command's clone of the config repo: where its work
// tree is (to make paths in errors relative to the repo), the repo's forge (links) and the
// commit its files were last read at.
type checkout struct {
	roots []string // the work tree, and the same with symlinks resolved
	forge webRepo
	head  string
}

// recordCheckout records the clone repo for the report (see checkout).
func (r *runner) recordCheckout(repo *configrepo.Repo) {
	roots := []string{repo.Dir()}
	if real, err := filepath.EvalSymlinks(repo.Dir()); err == nil && real != repo.Dir() {
		roots = append(roots, real)
	}
	r.checkout = &checkout{roots: roots, forge: forgeOf(repo.URL(), r.ci)}
	r.readCheckout(repo)
}

// readCheckout notes the commit the clone's work tree is at now.
func (r *runner) readCheckout(repo *configrepo.Repo) {
	if h, err := repo.Head(); err == nil && r.checkout != nil {
		r.checkout.head = h
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
	if o.PullRequestURL != "" {
		parts = append(parts, fmt.Sprintf("pull-request=%d", o.PullRequestNumber), "pull-request-url="+o.PullRequestURL)
	}
	if o.Rollout != "" {
		parts = append(parts, fmt.Sprintf("applied=%d", o.Applied))
		if o.Pruned > 0 {
			parts = append(parts, fmt.Sprintf("pruned=%d", o.Pruned))
		}
		parts = append(parts, "rollout="+o.Rollout)
	}
	return strings.Join(parts, " ")
}

// webRepo locates a repository's web pages: base is https://host/owner/repo (or the http://
// URL the repo is served at), kind the forge's URL scheme for commits and files. The zero
// webRepo links nothing.
type webRepo struct {
	base string
	kind ci.Provider // ci.ProviderGitHub or ci.ProviderGitLab
}

// forgeOf finds the web pages of the repository cloned from repoURL (https://, http://,
// ssh:// or scp-like user@host:path). A repo on the forge the CI runs on (run.ServerURL:
// GitHub.com, GitHub Enterprise Server, GitLab.com or a self-hosted GitLab, also when reached
// over SSH or on GitLab's separate SSH host) is linked on that forge; otherwise a host named
// like github or gitlab is taken for one, and an SSH URL for https://host/path. Other git
// servers are not linked.
func forgeOf(repoURL string, run ci.Context) webRepo {
	loc, ok := parseRepoLocation(repoURL)
	if !ok {
		return webRepo{}
	}
	web := "https://" + loc.hostname + "/" + loc.path
	if loc.web != "" {
		web = loc.web + "/" + loc.path
	}
	if srv, err := url.Parse(run.ServerURL); err == nil && srv.Hostname() != "" && run.Provider != ci.ProviderNone &&
		(strings.EqualFold(srv.Hostname(), loc.hostname) || run.SSHHost != "" && strings.EqualFold(hostOnly(run.SSHHost), loc.hostname)) {
		if loc.web == "" {
			// An SSH path does not hold the server's relative URL root (https://host/gitlab).
			web = strings.TrimSuffix(run.ServerURL, "/") + "/" + loc.path
		}
		return webRepo{base: web, kind: run.Provider}
	}
	host := strings.ToLower(loc.hostname)
	switch {
	case host == "ssh.github.com": // GitHub's SSH over port 443
		return webRepo{base: "https://github.com/" + loc.path, kind: ci.ProviderGitHub}
	case strings.Contains(host, "github"):
		return webRepo{base: web, kind: ci.ProviderGitHub}
	case strings.Contains(host, "gitlab"):
		return webRepo{base: web, kind: ci.ProviderGitLab}
	}
	return webRepo{}
}

// repoLocation is a repository URL taken apart: the host name, the path without a leading
// slash or trailing .git, and, for http(s) URLs, scheme://host[:port] where its pages are.
type repoLocation struct {
	hostname, path, web string
}

func parseRepoLocation(repoURL string) (repoLocation, bool) {
	var loc repoLocation
	if i := strings.Index(repoURL, "://"); i >= 0 {
		u, err := url.Parse(repoURL)
		if err != nil || u.Hostname() == "" {
			return loc, false
		}
		loc.hostname, loc.path = u.Hostname(), u.Path
		switch strings.ToLower(u.Scheme) {
		case "https", "http":
			loc.web = strings.ToLower(u.Scheme) + "://" + u.Host
		case "ssh", "git+ssh", "ssh+git":
		default:
			return loc, false
		}
	} else {
		// scp-like [user@]host:path
		host, path, ok := strings.Cut(repoURL, ":")
		if !ok || strings.Contains(host, "/") {
			return loc, false
		}
		if at := strings.LastIndex(host, "@"); at >= 0 {
			host = host[at+1:]
		}
		loc.hostname, loc.path = host, path
	}
	loc.path = strings.TrimSuffix(strings.Trim(loc.path, "/"), ".git")
	loc.path = strings.Trim(loc.path, "/")
	return loc, loc.hostname != "" && loc.path != ""
}

// hostOnly drops a port from host[:port].
func hostOnly(hostport string) string {
	if u, err := url.Parse("//" + hostport); err == nil && u.Hostname() != "" {
		return u.Hostname()
	}
	return hostport
}

// commit links a commit; "" when the forge is unknown or sha is empty or zero.
func (f webRepo) commit(sha string) string {
	if f.base == "" || strings.Trim(sha, "0") == "" {
		return ""
	}
	if f.kind == ci.ProviderGitLab {
		return f.base + "/-/commit/" + sha
	}
	return f.base + "/commit/" + sha
}

// file links a file of the repo (path relative to its root) at commit sha, at line when it is
// positive; "" when the forge or the commit is unknown.
func (f webRepo) file(sha, path string, line int) string {
	if f.base == "" || strings.Trim(sha, "0") == "" || path == "" {
		return ""
	}
	parts := strings.Split(path, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	link := f.base + "/blob/" + sha + "/" + strings.Join(parts, "/")
	if f.kind == ci.ProviderGitLab {
		link = f.base + "/-/blob/" + sha + "/" + strings.Join(parts, "/")
	}
	if line > 0 {
		link += fmt.Sprintf("#L%d", line)
	}
	return link
}

// is reports whether the forge's repo is the one at webURL (the workflow's own repository).
func (f webRepo) is(webURL string) bool {
	return f.base != "" && strings.EqualFold(strings.TrimSuffix(f.base, "/"), strings.TrimSuffix(webURL, "/"))
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

// previousImages are the references an edit found in the overlay, by image name, for the
// outcome's Previous.
func previousImages(er editResult) map[string]string {
	prev := make(map[string]string, len(er.previous))
	for name, img := range er.previous {
		prev[name] = kustomize.FormatImage(img)
	}
	return prev
}

// redactOutcome masks secrets in everything a reporter may write to a file (GitHub outputs and
// summary, GitLab dotenv), which does not pass through the redacting writers.
func (r *runner) redactOutcome(o ci.Outcome, err error) ci.Outcome {
	red := r.redactor.String
	o.CommitURL, o.URL, o.ImageDigest, o.PullRequestURL = red(o.CommitURL), red(o.URL), red(o.ImageDigest), red(o.PullRequestURL)
	for i := range o.Images {
		o.Images[i] = red(o.Images[i])
	}
	for k, v := range o.Previous {
		o.Previous[k] = red(v)
	}
	o.Diff = red(o.Diff)
	o.ErrAt.URL = red(o.ErrAt.URL)
	o.Run.SourceRepo, o.Run.CommitURL, o.Run.PipelineURL = red(o.Run.SourceRepo), red(o.Run.CommitURL), red(o.Run.PipelineURL)
	o.Err = r.redactor.Error(err)
	return o
}

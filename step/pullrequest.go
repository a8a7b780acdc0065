// pullrequest.go owns --via pull-request: the proposal branch, the forge's pull request and
// its body.

package step

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/forge"
	"github.com/deliverhq/deliver/step/policy"
)

// Flags of the pull-request mode.
const (
	flagVia         = "via"
	flagForge       = "forge"
	flagForgeAPIURL = "forge-api-url"
	flagAutoMerge   = "auto-merge"
	flagMergeMethod = "merge-method"
	flagWaitMerged  = "wait-merged"
	flagMergeWait   = "merge-timeout"
	flagMergePoll   = "merge-poll-interval"
)

// pullRequestFlags choose how a change reaches the environment's branch.
func pullRequestFlags() []cli.Flag {
	const cat = "Pull request"
	return []cli.Flag{
		&cli.StringFlag{Name: flagVia, Category: cat, EnvVars: env(flagVia), Usage: "how the change reaches the branch: push (commit on it) or pull-request (a branch of its own and a pull/merge request, for a protected branch); default: the environment's via in deliver.yaml, else push"},
		&cli.StringFlag{Name: flagForge, Category: cat, EnvVars: env(flagForge), Usage: "the forge hosting the config repo: github, gitea or gitlab (default: detected from the URL and the CI variables)"},
		&cli.StringFlag{Name: flagForgeAPIURL, Category: cat, EnvVars: env(flagForgeAPIURL), Usage: "the forge's API base URL (default: derived from the config repo URL)"},
		&cli.BoolFlag{Name: flagAutoMerge, Category: cat, EnvVars: env(flagAutoMerge), Usage: "let the forge merge the pull request once its rules are met (GitHub auto-merge, Gitea merge when checks succeed, GitLab merge when the pipeline succeeds)"},
		&cli.StringFlag{Name: flagMergeMethod, Category: cat, EnvVars: env(flagMergeMethod), Value: string(forge.MergeCommit), Usage: "merge, squash or rebase (for --auto-merge)"},
		&cli.BoolFlag{Name: flagWaitMerged, Category: cat, EnvVars: env(flagWaitMerged), Usage: "wait until the pull request is merged, then apply the merged commit and wait for the rollout (bounded by --merge-timeout)"},
		&cli.DurationFlag{Name: flagMergeWait, Category: cat, EnvVars: env(flagMergeWait), Value: time.Hour, Usage: "how long --wait-merged waits for the merge"},
		&cli.DurationFlag{Name: flagMergePoll, Category: cat, EnvVars: env(flagMergePoll), Value: 10 * time.Second, Usage: "how often --wait-merged reads the pull request"},
	}
}

// prOptions are the bound pull-request flags.
type prOptions struct {
	via        string // "" (deliver.yaml decides), push or pull-request
	kind       forge.Kind
	apiURL     string
	autoMerge  bool
	method     forge.MergeMethod
	waitMerged bool
	timeout    time.Duration
	poll       time.Duration
}

// bindPullRequest validates the pull-request flags, before anything is contacted.
func bindPullRequest(c *cli.Context) (prOptions, error) {
	o := prOptions{
		via: c.String(flagVia), apiURL: c.String(flagForgeAPIURL), autoMerge: c.Bool(flagAutoMerge),
		waitMerged: c.Bool(flagWaitMerged), timeout: c.Duration(flagMergeWait), poll: c.Duration(flagMergePoll),
	}
	switch o.via {
	case "", policy.ViaPush, policy.ViaPullRequest:
	default:
		return o, usage(fmt.Errorf("--%s %q: want push or pull-request", flagVia, o.via))
	}
	var err error
	if s := c.String(flagForge); s != "" {
		if o.kind, err = forge.ParseKind(s); err != nil {
			return o, usage(fmt.Errorf("--%s: %w", flagForge, err))
		}
	}
	if o.method, err = forge.ParseMergeMethod(c.String(flagMergeMethod)); err != nil {
		return o, usage(fmt.Errorf("--%s: %w", flagMergeMethod, err))
	}
	if o.timeout <= 0 || o.poll <= 0 {
		return o, usage(fmt.Errorf("--%s and --%s must be positive", flagMergeWait, flagMergePoll))
	}
	if o.apiURL != "" && !strings.HasPrefix(o.apiURL, "https://") && !strings.HasPrefix(o.apiURL, "http://") {
		return o, usage(fmt.Errorf("--%s %q: want an http(s) URL", flagForgeAPIURL, o.apiURL))
	}
	return o, nil
}

// via decides how the change of req reaches the branch: the run's --via, else the environment's
// via in deliver.yaml. A run may ask for a pull request where the policy allows a push, never
// the other way round.
func via(dir string, req changeRequest) (string, error) {
	pol, err := policy.Load(dir)
	if err != nil {
		return "", usage(err)
	}
	want := pol.Via(req.envName)
	switch req.pr.via {
	case "":
		return want, nil
	case policy.ViaPush:
		if want == policy.ViaPullRequest {
			return "", fmt.Errorf("%w: environment %s takes changes through pull requests only (%s: environments.%s.via: pull-request); drop --%s push",
				errPolicy, req.envName, policy.FileName, req.envName, flagVia)
		}
	}
	return req.pr.via, nil
}

// forgeClient builds the forge client for the config repo, with the git token and the git TLS
// settings.
func (r *runner) forgeClient(c *cli.Context, repoURL string, o prOptions) (*forge.Client, error) {
	auth, err := r.gitAuth(c)
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: auth.InsecureSkipTLS} //nolint:gosec // only with --git-insecure-skip-tls-verify, which warns
	if len(auth.CABundle) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM(auth.CABundle)
		tlsConf.RootCAs = pool
	}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsConf}}
	fc, err := forge.New(forge.Options{Kind: o.kind, RepoURL: repoURL, APIURL: o.apiURL, Token: auth.Password,
		HTTPClient: hc, Getenv: r.getenv, Logf: r.rep.Logf})
	if err != nil {
		return nil, usage(fmt.Errorf("pull-request mode: %w (--%s)", err, flagForge))
	}
	return fc, nil
}

// proposal is what the edit of a change leaves for its pull request.
type proposal struct {
	before, after string // the overlay file before and after the edit
	path          string
	forced        bool
}

// proposeChange is changeImages in pull-request mode: the same edit (policy checks included, on
// the branch's tip) is committed on a branch of its own, force-pushed there, and a pull request
// opened or refreshed; with --wait-merged deliver then waits for the merge and applies the
// merged commit.
func (r *runner) proposeChange(ctx context.Context, c *cli.Context, repo *configrepo.Repo, ap *applier, req changeRequest, out ci.Outcome,
	edit configrepo.Edit, landed *editResult, prop *proposal) (ci.Outcome, error) {
	fc, err := r.forgeClient(c, repo.URL(), req.pr)
	if err != nil {
		return out, err
	}
	var names []string
	for _, img := range req.images {
		names = append(names, img.Name)
	}
	ch := forge.Change{
		Branch: forge.Branch(req.envName, names), Base: repo.Branch(),
		AutoMerge: req.pr.autoMerge, MergeMethod: req.pr.method, DeleteBranch: true,
	}
	var message string
	propose := func(ctx context.Context) (configrepo.ProposeResult, error) {
		end := r.rep.Phase("push", fmt.Sprintf("commit on the tip of %s and push to %s for a pull request", ch.Base, ch.Branch))
		res, err := repo.Propose(ctx, r.author(c), ch.Branch, func() map[string]string {
			ch.Title, _, _ = strings.Cut(message, "\n")
			ch.Body = r.pullRequestBody(req, *landed, *prop, ch.Branch)
			return fc.PushOptions(ch)
		}, func(ctx context.Context, dir string) (string, []string, error) {
			msg, paths, err := edit(ctx, dir)
			message = msg
			return msg, paths, err
		})
		end(err)
		if err == nil && res.Changed {
			r.rep.Logf("pushed %s on %s to %s", short(res.Commit), short(res.Parent), ch.Branch)
		}
		return res, err
	}
	res, err := propose(ctx)
	if err != nil {
		return out, err
	}
	if !res.Changed {
		r.rep.Logf("%s already holds these images: no pull request needed", ch.Base)
		out.CommitSHA = res.Commit
		return out, nil
	}
	pr, err := r.syncPullRequest(ctx, fc, ch, res.Output, &out)
	if err != nil {
		return out, err
	}
	if !req.pr.waitMerged {
		r.rep.Logf("the change reaches %s when pull request #%d is merged; the config repo's pipeline applies it then (or run with --%s)", req.envName, pr.Number, flagWaitMerged)
		return out, nil
	}

	// --wait-merged: follow the pull request; when the base moves under it, make the change
	// again on the new tip (policy checks included), so that it never waits on a stale base.
	end := r.rep.Phase("merge", fmt.Sprintf("waiting up to %s for pull request #%d to be merged", req.pr.timeout, pr.Number))
	wctx, cancel := context.WithTimeout(ctx, req.pr.timeout)
	defer cancel()
	parent := res.Parent
	merged, err := fc.WaitMerged(wctx, pr.Number, forge.WaitOptions{Interval: req.pr.poll, OnPoll: func(ctx context.Context, _ forge.PullRequest) error {
		tip, err := repo.Tip(ctx)
		if err != nil || tip == parent {
			return nil // unreadable now: try again at the next poll
		}
		// The base moved. By this very merge? Then the next poll sees it merged.
		if now, err := fc.Get(ctx, pr.Number); err != nil || now.State != forge.StateOpen {
			return nil
		}
		r.rep.Logf("%s moved to %s: making the change again on it", ch.Base, short(tip))
		if _, err := repo.Fetch(ctx); err != nil {
			return err
		}
		again, err := propose(ctx)
		if err != nil {
			return err
		}
		if !again.Changed {
			// The base holds these images now: the merge itself (Gitea moves the branch a
			// moment before it marks the pull request merged) or another change that landed
			// them. The next polls tell which.
			parent = tip
			return nil
		}
		parent = again.Parent
		_, err = r.syncPullRequest(ctx, fc, ch, again.Output, &out)
		return err
	}})
	end(err)
	if err != nil {
		return out, pushError(err)
	}
	r.rep.Logf("pull request #%d merged as %s", merged.Number, short(merged.MergeCommitSHA))
	out.Changed, out.CommitSHA = true, merged.MergeCommitSHA
	if ap == nil {
		return out, nil
	}
	// Apply the branch as merged: fetch its tip, which holds the merge (or something newer).
	tip, err := repo.Fetch(ctx)
	if err != nil {
		return out, err
	}
	commit := merged.MergeCommitSHA
	if commit == "" {
		commit = tip
	}
	return out, ap.deliver(ctx, repo, req.overlay, nil, commit, changedImages(*landed), &out)
}

// syncPullRequest opens or refreshes the pull request and reports it.
func (r *runner) syncPullRequest(ctx context.Context, fc *forge.Client, ch forge.Change, pushOutput string, out *ci.Outcome) (forge.PullRequest, error) {
	end := r.rep.Phase("pull-request", fmt.Sprintf("%s: %s into %s", fc.Kind(), ch.Branch, ch.Base))
	pr, err := fc.Sync(ctx, ch, pushOutput)
	end(err)
	if err != nil {
		return pr, pushError(err)
	}
	out.PullRequestURL, out.PullRequestNumber = pr.URL, pr.Number
	r.rep.Logf("pull request #%d: %s", pr.Number, pr.URL)
	if pr.AutoMerge {
		r.rep.Logf("the forge merges it once its rules are met (auto-merge)")
	}
	return pr, nil
}

// pushError gives forge errors deliver's exit codes: a refused token is exit 4, bad input 2,
// an interruption 130, anything else the config repo not updated (5).
func pushError(err error) error {
	switch {
	case errors.Is(err, forge.ErrAuth):
		return fmt.Errorf("%w: %w", configrepo.ErrAuth, err)
	case errors.Is(err, forge.ErrInvalid):
		return usage(err)
	case errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%w: %w", configrepo.ErrRejected, err)
}

// pullRequestBody is the pull request's description, for a reviewer: what changes from what to
// what, where it comes from, what deliver checked, and the overlay diff.
func (r *runner) pullRequestBody(req changeRequest, landed editResult, prop proposal, branch string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "deliver proposes a %s to **%s** (overlay `%s`).\n\n", req.action, req.envName, req.overlay)
	b.WriteString("| image | running now | proposed |\n|---|---|---|\n")
	for _, ch := range landed.changes {
		fmt.Fprintf(&b, "| %s | `%s` | `%s` |\n", ch.Name, orNone(ch.From), ch.To)
	}
	b.WriteString("\n")
	if r.ci.SourceRepo != "" {
		src := r.ci.SourceRepo
		if r.ci.CommitURL != "" {
			src = r.ci.CommitURL
		}
		fmt.Fprintf(&b, "- Source: %s\n", src)
	}
	if r.ci.PipelineURL != "" {
		fmt.Fprintf(&b, "- Pipeline: %s\n", r.ci.PipelineURL)
	}
	fmt.Fprintf(&b, "- Trigger: %s (%s)", req.trigger, req.event)
	if r.ci.Actor != "" {
		fmt.Fprintf(&b, " by %s", r.ci.Actor)
	}
	b.WriteString("\n")
	if req.reason != "" {
		fmt.Fprintf(&b, "- Reason: %s\n", req.reason)
	}
	checks := []string{"images verified in their registries (digests pinned)", "the overlay renders"}
	if prop.forced {
		checks = append(checks, "a lock was overridden (--force, manual run)")
	} else {
		checks = append(checks, "no lock on these images")
	}
	if req.trigger == ci.TriggerAutomated {
		checks = append(checks, "automated runs allowed here", "not a downgrade")
	}
	fmt.Fprintf(&b, "- Checks passed: %s\n", strings.Join(checks, "; "))
	fmt.Fprintf(&b, "\nMerging this applies it (the config repo's pipeline runs `deliver apply --env %s`). A newer build of the same images updates this pull request; the branch `%s` belongs to deliver.\n", req.envName, branch)
	if prop.before != prop.after {
		diff, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(prop.before), B: difflib.SplitLines(prop.after),
			FromFile: "a/" + prop.path, ToFile: "b/" + prop.path, Context: 3,
		})
		fmt.Fprintf(&b, "\n<details><summary>Overlay diff</summary>\n\n```diff\n%s```\n</details>\n", diff)
	}
	return b.String()
}

// protectedHint adds to a push refused by a protected branch how to deploy there instead.
func protectedHint(err error, envName string) error {
	if err == nil || !errors.Is(err, configrepo.ErrRejected) {
		return err
	}
	s := strings.ToLower(err.Error())
	if !strings.Contains(s, "protected branch") && !strings.Contains(s, "protected ref") {
		return err
	}
	return fmt.Errorf("%w\nthe branch is protected: deliver through a pull request instead, with --%s %s (or environments.%s.via: %s in %s)",
		err, flagVia, policy.ViaPullRequest, envName, policy.ViaPullRequest, policy.FileName)
}

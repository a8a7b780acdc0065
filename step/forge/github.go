package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-github/v93/github"
)

// githubAPI drives GitHub, and Gitea through the same REST shape, with go-github.
type githubAPI struct {
	kind        Kind
	c           *github.Client
	owner, repo string
	graphql     string // GitHub's GraphQL endpoint (auto-merge)
	logf        func(format string, args ...any)
	// mergeRetry is how long a Gitea merge waits out "Please try again later" (its
	// mergeability check runs asynchronously after every push).
	mergeRetry time.Duration
}

func newGitHub(kind Kind, api, token, owner, repo string, hc *http.Client, logf func(string, ...any)) (*githubAPI, error) {
	hc = withRetries(hc)
	c, err := github.NewClient(github.WithHTTPClient(hc), github.WithURLs(&api, &api), github.WithAuthToken(token),
		github.WithUserAgent("deliver"))
	if err != nil {
		return nil, fmt.Errorf("%w: %s API URL %s: %v", ErrInvalid, kind, api, err)
	}
	g := &githubAPI{kind: kind, c: c, owner: owner, repo: repo, logf: logf, mergeRetry: 30 * time.Second}
	// GitHub.com serves GraphQL at api.github.com/graphql, GitHub Enterprise Server at
	// /api/graphql next to /api/v3/.
	if base, ok := strings.CutSuffix(api, "/api/v3/"); ok {
		g.graphql = base + "/api/graphql"
	} else {
		g.graphql = api + "graphql"
	}
	return g, nil
}

func (g *githubAPI) pushOptions(Change) map[string]string { return nil }

func (g *githubAPI) slug() string { return g.owner + "/" + g.repo }

// findOpen returns the open pull request from ch.Branch into ch.Base, or nil; of several (see
// dedupe), the oldest.
func (g *githubAPI) findOpen(ctx context.Context, ch Change) (*github.PullRequest, error) {
	prs, err := g.listOpen(ctx, ch)
	if err != nil || len(prs) == 0 {
		return nil, err
	}
	oldest := prs[0]
	for _, pr := range prs[1:] {
		if pr.GetNumber() < oldest.GetNumber() {
			oldest = pr
		}
	}
	return oldest, nil
}

// listOpen returns the open pull requests from ch.Branch into ch.Base. GitHub filters by head
// on the server; Gitea ignores that filter and returns every open pull request, so the pages
// are filtered here in both cases.
func (g *githubAPI) listOpen(ctx context.Context, ch Change) ([]*github.PullRequest, error) {
	opts := &github.PullRequestListOptions{State: "open", Base: ch.Base, ListOptions: github.ListOptions{PerPage: 100}}
	if g.kind == GitHub {
		opts.Head = g.owner + ":" + ch.Branch
	}
	var ours []*github.PullRequest
	for range 100 { // 100 pages of open pull requests is far beyond any config repo
		prs, resp, err := g.c.PullRequests.List(ctx, g.owner, g.repo, opts)
		if err != nil {
			return nil, classify(fmt.Sprintf("listing the open pull requests of %s", g.slug()), err)
		}
		for _, pr := range prs {
			if g.isOurs(pr, ch) {
				ours = append(ours, pr)
			}
		}
		if resp == nil || resp.NextPage == 0 {
			break
		}
		opts.Page = resp.NextPage
	}
	return ours, nil
}

// dedupe handles two runs that opened a pull request for the same branch at once, which Gitea
// does not refuse (GitHub does, with 422): on Gitea, every run that opened one lists them again, and the
// run whose pull request is not the oldest closes its own and carries on with the oldest. So
// one stays open, whoever wins. Gitea numbers a pull request before the transaction that
// stores it ends, so an older one may not be listed yet when a newer one is: the run lists
// twice more, over about a second, before it keeps its own.
func (g *githubAPI) dedupe(ctx context.Context, ch Change, mine *github.PullRequest) (*github.PullRequest, error) {
	const checks = 3
	for i := range checks {
		if wait := time.Duration(i*i) * 250 * time.Millisecond; wait > 0 {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("checking that pull request #%d is the only one from %s: %w", mine.GetNumber(), ch.Branch, context.Cause(ctx))
			case <-time.After(wait):
			}
		}
		oldest, err := g.findOpen(ctx, ch)
		if err != nil {
			return nil, err
		}
		if oldest == nil || oldest.GetNumber() >= mine.GetNumber() {
			if i == checks-1 {
				return mine, nil
			}
			continue
		}
		_, _, err = g.c.PullRequests.Edit(ctx, g.owner, g.repo, mine.GetNumber(), &github.PullRequest{State: new("closed")})
		if err != nil {
			return nil, classify(fmt.Sprintf("closing pull request #%d, opened at the same time as #%d for the same branch", mine.GetNumber(), oldest.GetNumber()), err)
		}
		g.logf("closed pull request #%d: #%d was opened for %s at the same time", mine.GetNumber(), oldest.GetNumber(), ch.Branch)
		return oldest, nil
	}
	return mine, nil
}

// isOurs tells whether pr is the pull request of ch: same head branch in this repository (not
// a fork's branch of the same name), same base.
func (g *githubAPI) isOurs(pr *github.PullRequest, ch Change) bool {
	if pr.GetState() != "open" || pr.GetHead().GetRef() != ch.Branch || pr.GetBase().GetRef() != ch.Base {
		return false
	}
	if hr := pr.GetHead().GetRepo(); hr != nil && hr.GetFullName() != "" {
		return strings.EqualFold(hr.GetFullName(), g.slug())
	}
	return true
}

func (g *githubAPI) sync(ctx context.Context, ch Change, _ string) (PullRequest, error) {
	pr, err := g.findOpen(ctx, ch)
	if err != nil {
		return PullRequest{}, err
	}
	if pr == nil {
		created, _, err := g.c.PullRequests.Create(ctx, g.owner, g.repo, github.CreatePullRequest{
			Title: new(ch.Title), Head: ch.Branch, Base: ch.Base, Body: new(ch.Body),
		})
		switch {
		case err == nil:
			g.logf("opened pull request #%d: %s", created.GetNumber(), created.GetHTMLURL())
			pr = created
			if g.kind == Gitea { // GitHub refuses the second one itself (422, handled below)
				if pr, err = g.dedupe(ctx, ch, created); err != nil {
					return PullRequest{}, err
				}
			}
		case alreadyExists(err):
			// Another run opened it between the list and the create: update that one.
			if pr, err = g.findOpen(ctx, ch); err != nil {
				return PullRequest{}, err
			}
			if pr == nil {
				return PullRequest{}, fmt.Errorf("%w: %s says a pull request from %s already exists, but none is open", ErrRefused, g.kind, ch.Branch)
			}
		default:
			return PullRequest{}, classify(fmt.Sprintf("opening a pull request from %s into %s in %s", ch.Branch, ch.Base, g.slug()), err)
		}
	}
	if pr.GetTitle() != ch.Title || normalizeBody(pr.GetBody()) != normalizeBody(ch.Body) {
		edited, _, err := g.c.PullRequests.Edit(ctx, g.owner, g.repo, pr.GetNumber(), &github.PullRequest{
			Title: new(ch.Title), Body: new(ch.Body),
		})
		if err != nil {
			return PullRequest{}, classify(fmt.Sprintf("updating the title and body of pull request #%d in %s", pr.GetNumber(), g.slug()), err)
		}
		pr = edited
		g.logf("updated pull request #%d: %s", pr.GetNumber(), pr.GetHTMLURL())
	}
	out := toPullRequest(pr)
	if ch.AutoMerge && !out.AutoMerge {
		merged, err := g.autoMerge(ctx, pr, ch)
		if err != nil {
			return out, err
		}
		out.AutoMerge = true
		if merged {
			return g.get(ctx, out.Number)
		}
	}
	return out, nil
}

// normalizeBody lets a body the forge stored with CRLF compare equal to the one sent.
func normalizeBody(s string) string {
	return strings.TrimSpace(strings.ReplaceAll(s, "\r\n", "\n"))
}

// alreadyExists recognises the answer to opening a second pull request for the same head and
// base: GitHub's 422 "A pull request already exists for owner:branch", Gitea's 409 "pull
// request already exists for these targets".
func alreadyExists(err error) bool {
	s := statusOf(err)
	return (s == http.StatusUnprocessableEntity || s == http.StatusConflict) && strings.Contains(strings.ToLower(err.Error()), "already exists")
}

func toPullRequest(pr *github.PullRequest) PullRequest {
	out := PullRequest{
		Number:    pr.GetNumber(),
		URL:       pr.GetHTMLURL(),
		State:     StateOpen,
		HeadSHA:   pr.GetHead().GetSHA(),
		AutoMerge: pr.AutoMerge != nil,
		Mergeable: pr.Mergeable,
	}
	switch {
	case pr.GetMerged() || pr.MergedAt != nil:
		out.State = StateMerged
		// Only a merged pull request's merge_commit_sha is on the base: before that, GitHub
		// reports the commit of a test merge there.
		out.MergeCommitSHA = pr.GetMergeCommitSHA()
	case pr.GetState() == "closed":
		out.State = StateClosed
	}
	return out
}

func (g *githubAPI) get(ctx context.Context, number int) (PullRequest, error) {
	pr, _, err := g.c.PullRequests.Get(ctx, g.owner, g.repo, number)
	if err != nil {
		return PullRequest{}, classify(fmt.Sprintf("reading pull request #%d of %s", number, g.slug()), err)
	}
	return toPullRequest(pr), nil
}

// autoMerge asks the forge to merge pr once its rules are met. merged reports that it merged
// at once (GitHub: nothing was left to wait for).
func (g *githubAPI) autoMerge(ctx context.Context, pr *github.PullRequest, ch Change) (merged bool, err error) {
	if g.kind == Gitea {
		return false, g.giteaMerge(ctx, pr.GetNumber(), pr.GetHead().GetSHA(), ch.MergeMethod, ch.DeleteBranch, true)
	}
	return g.githubAutoMerge(ctx, pr, ch.MergeMethod)
}

// enableAutoMergeMutation is GitHub's GraphQL mutation for auto-merge; REST has none.
const enableAutoMergeMutation = `mutation($id: ID!, $method: PullRequestMergeMethod!) {
  enablePullRequestAutoMerge(input: {pullRequestId: $id, mergeMethod: $method}) {
    pullRequest { number autoMergeRequest { enabledAt } }
  }
}`

type graphqlAnswer struct {
	Errors []struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"errors"`
}

// githubAutoMerge enables GitHub auto-merge through GraphQL. GitHub refuses it for a pull
// request that could be merged right now ("is in clean status"): that one is merged through
// REST instead, since nothing is left to wait for.
func (g *githubAPI) githubAutoMerge(ctx context.Context, pr *github.PullRequest, method MergeMethod) (merged bool, err error) {
	body := map[string]any{
		"query":     enableAutoMergeMutation,
		"variables": map[string]any{"id": pr.GetNodeID(), "method": strings.ToUpper(string(method))},
	}
	req, err := g.c.NewRequest(ctx, http.MethodPost, g.graphql, body)
	if err != nil {
		return false, fmt.Errorf("%w: building the auto-merge request: %v", ErrInvalid, err)
	}
	var ans graphqlAnswer
	if _, err := g.c.Do(req, &ans); err != nil {
		return false, classify(fmt.Sprintf("enabling auto-merge of pull request #%d in %s", pr.GetNumber(), g.slug()), err)
	}
	if len(ans.Errors) == 0 {
		g.logf("auto-merge enabled for pull request #%d", pr.GetNumber())
		return false, nil
	}
	msg := ans.Errors[0].Message
	if strings.Contains(strings.ToLower(msg), "clean status") {
		g.logf("pull request #%d can be merged now; merging it", pr.GetNumber())
		return true, g.merge(ctx, pr.GetNumber(), pr.GetHead().GetSHA(), method)
	}
	hint := ""
	if strings.Contains(strings.ToLower(msg), "not allowed") {
		hint = "; turn on \"Allow auto-merge\" in the repository's settings"
	}
	return false, fmt.Errorf("%w: enabling auto-merge of pull request #%d in %s: %s%s", ErrRefused, pr.GetNumber(), g.slug(), msg, hint)
}

func (g *githubAPI) merge(ctx context.Context, number int, headSHA string, method MergeMethod) error {
	if g.kind == Gitea {
		return g.giteaMerge(ctx, number, headSHA, method, false, false)
	}
	// GitHub merges with PUT .../merge {merge_method, sha}.
	_, _, err := g.c.PullRequests.Merge(ctx, g.owner, g.repo, number, "", &github.PullRequestOptions{
		MergeMethod: string(method), SHA: headSHA,
	})
	if err != nil {
		return classify(fmt.Sprintf("merging pull request #%d of %s", number, g.slug()), err)
	}
	return nil
}

// giteaMerge merges through Gitea's own endpoint: POST .../merge with "Do" (go-github's PUT gets
// 405 there). With auto set, it schedules the merge for when the rules are met
// (merge_when_checks_succeed); a merge already scheduled is fine. Gitea answers 405 "Please
// try again later" while its mergeability check of a new head is still running: that is
// retried for a while.
func (g *githubAPI) giteaMerge(ctx context.Context, number int, headSHA string, method MergeMethod, deleteBranch, auto bool) error {
	body := map[string]any{"Do": string(method)}
	if headSHA != "" {
		body["head_commit_id"] = headSHA
	}
	if deleteBranch {
		body["delete_branch_after_merge"] = true
	}
	if auto {
		body["merge_when_checks_succeed"] = true
	}
	doing := fmt.Sprintf("merging pull request #%d of %s", number, g.slug())
	if auto {
		doing = fmt.Sprintf("scheduling pull request #%d of %s to merge when its checks succeed", number, g.slug())
	}
	deadline := time.Now().Add(g.mergeRetry)
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		req, err := g.c.NewRequest(ctx, http.MethodPost, fmt.Sprintf("repos/%s/%s/pulls/%d/merge", g.owner, g.repo, number), body)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInvalid, doing, err)
		}
		_, err = g.c.Do(req, nil)
		switch {
		case err == nil:
			return nil
		case auto && statusOf(err) == http.StatusConflict && strings.Contains(err.Error(), "already scheduled"):
			return nil
		case statusOf(err) == http.StatusMethodNotAllowed && strings.Contains(err.Error(), "try again later") && time.Now().Before(deadline):
			select {
			case <-ctx.Done():
				return classify(doing, ctx.Err())
			case <-time.After(wait):
			}
		default:
			return classify(doing, err)
		}
	}
}

// statusOf returns the HTTP status of a go-github error, or 0.
func statusOf(err error) int {
	var er *github.ErrorResponse
	var rl *github.RateLimitError
	var ab *github.AbuseRateLimitError
	var he *httpError
	switch {
	case errors.As(err, &er) && er.Response != nil:
		return er.Response.StatusCode
	case errors.As(err, &rl) && rl.Response != nil:
		return rl.Response.StatusCode
	case errors.As(err, &ab) && ab.Response != nil:
		return ab.Response.StatusCode
	case errors.As(err, &he):
		return he.status
	}
	return 0
}

// isRateLimit recognises GitHub's primary and secondary rate limits (403 or 429).
func isRateLimit(err error) bool {
	var rl *github.RateLimitError
	var ab *github.AbuseRateLimitError
	return errors.As(err, &rl) || errors.As(err, &ab)
}

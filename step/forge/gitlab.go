package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// gitlab opens and updates merge requests with the push itself, through GitLab's
// merge_request.* push options, and reads them through the REST API (v4).
type gitlab struct {
	api     string // .../api/v4/
	token   string
	project string // group/subgroup/project
	http    *http.Client
	logf    func(format string, args ...any)
}

// pushOptions are GitLab's merge-request push options. GitLab reads "key" and "key=" alike as
// true, and turns a literal \n in the description into a line break (a push option cannot hold
// one). When an open merge request from the branch exists, GitLab updates its title,
// description, target and the other options instead of creating one.
func (g *gitlab) pushOptions(ch Change) map[string]string {
	o := map[string]string{
		"merge_request.create":      "",
		"merge_request.target":      ch.Base,
		"merge_request.title":       oneLine(ch.Title),
		"merge_request.description": descriptionOption(ch.Body),
	}
	if ch.DeleteBranch {
		o["merge_request.remove_source_branch"] = ""
	}
	if ch.AutoMerge {
		o["merge_request.merge_when_pipeline_succeeds"] = ""
	}
	if ch.MergeMethod == MergeSquash {
		o["merge_request.squash"] = ""
	}
	return o
}

// descriptionOption encodes body for the description push option, cut so that the encoded text
// (a line break takes two bytes there) stays within MaxBody and so within one pkt-line.
func descriptionOption(body string) string {
	d := pushOptionText(body)
	for limit := MaxBody; len(d) > MaxBody && limit > 2*len(truncatedNote); {
		limit -= len(d) - MaxBody
		d = pushOptionText(clip(body, limit))
	}
	return d
}

// oneLine makes s fit a push option: no line breaks or other control characters.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }), " ")
}

// pushOptionText encodes a multi-line text for GitLab's description push option: line breaks
// become a literal \n, which GitLab turns back into line breaks; other control characters go.
func pushOptionText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString("    ")
		case r < 0x20 || r == 0x7f:
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// mergeRequestURL finds the merge request GitLab names in its answer to a push:
//
//	View merge request for deliver/production/web:
//	  https://gitlab.example.com/acme/config/-/merge_requests/12
var mergeRequestURL = regexp.MustCompile(`(https?://\S+?/-/merge_requests/(\d+))(?:\s|$)`)

// gitlabMR is the part of GitLab's merge request resource deliver reads.
type gitlabMR struct {
	IID                       int    `json:"iid"`
	WebURL                    string `json:"web_url"`
	State                     string `json:"state"` // opened, closed, locked, merged
	SHA                       string `json:"sha"`
	MergeCommitSHA            string `json:"merge_commit_sha"`
	SquashCommitSHA           string `json:"squash_commit_sha"`
	MergeWhenPipelineSucceeds bool   `json:"merge_when_pipeline_succeeds"`
	HasConflicts              bool   `json:"has_conflicts"`
	DetailedMergeStatus       string `json:"detailed_merge_status"`
	SourceBranch              string `json:"source_branch"`
	TargetBranch              string `json:"target_branch"`
}

func (mr gitlabMR) pullRequest() PullRequest {
	pr := PullRequest{Number: mr.IID, URL: mr.WebURL, State: StateOpen, HeadSHA: mr.SHA, AutoMerge: mr.MergeWhenPipelineSucceeds}
	switch mr.State {
	case "merged":
		pr.State = StateMerged
		// A fast-forward merge leaves no merge commit: the base is then at the head.
		pr.MergeCommitSHA = firstNonEmpty(mr.MergeCommitSHA, mr.SquashCommitSHA, mr.SHA)
	case "closed":
		pr.State = StateClosed
	}
	if mr.HasConflicts {
		pr.Mergeable = new(false)
	} else if mr.DetailedMergeStatus == "mergeable" {
		pr.Mergeable = new(true)
	}
	return pr
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// sync reads the merge request the push opened or updated from GitLab's answer to it. With a
// token the API then reads it (or, when the answer named none, looks it up by branch); a token
// without API access (write_repository alone) is enough to open and update it.
func (g *gitlab) sync(ctx context.Context, ch Change, pushOutput string) (PullRequest, error) {
	var pr PullRequest
	if m := mergeRequestURL.FindAllStringSubmatch(pushOutput, -1); len(m) > 0 {
		last := m[len(m)-1]
		n, _ := strconv.Atoi(last[2])
		pr = PullRequest{Number: n, URL: last[1], State: StateOpen, AutoMerge: ch.AutoMerge}
	}
	if g.token == "" {
		if pr.Number == 0 {
			return pr, g.noMergeRequest(ch, pushOutput)
		}
		return pr, nil
	}
	if pr.Number != 0 {
		got, err := g.get(ctx, pr.Number)
		if err != nil {
			g.logf("reading merge request !%d: %v (it was opened by the push)", pr.Number, err)
			return pr, nil
		}
		return got, nil
	}
	mr, err := g.findOpen(ctx, ch)
	if err != nil {
		return pr, err
	}
	if mr == nil {
		return pr, g.noMergeRequest(ch, pushOutput)
	}
	return mr.pullRequest(), nil
}

// noMergeRequest explains a push that opened no merge request, with GitLab's warnings.
func (g *gitlab) noMergeRequest(ch Change, pushOutput string) error {
	detail := " (the server did not take the merge_request push options: is it GitLab, with merge requests enabled?)"
	if i := strings.Index(pushOutput, "WARNINGS"); i >= 0 {
		detail = "; it said:\n" + strings.TrimSpace(pushOutput[i:])
	}
	return fmt.Errorf("%w: GitLab opened no merge request for %s into %s%s", ErrRefused, ch.Branch, ch.Base, detail)
}

// gitlabProject is the project's path on the server: the repository path without the relative
// URL root GitLab may be served under (the path of CI_SERVER_URL when it is that server).
func gitlabProject(ref repoRef, getenv func(string) string) string {
	server := getenv("CI_SERVER_URL")
	if sameHost(hostOf(server), ref.host) {
		if u, err := url.Parse(server); err == nil {
			if root := strings.Trim(u.Path, "/"); root != "" {
				return strings.TrimPrefix(ref.path, root+"/")
			}
		}
	}
	return ref.path
}

func (g *gitlab) projectPath() string { return "projects/" + url.PathEscape(g.project) }

// findOpen looks up the open merge request from ch.Branch into ch.Base.
func (g *gitlab) findOpen(ctx context.Context, ch Change) (*gitlabMR, error) {
	q := url.Values{"state": {"opened"}, "source_branch": {ch.Branch}, "target_branch": {ch.Base}}
	var mrs []gitlabMR
	if err := g.call(ctx, http.MethodGet, g.projectPath()+"/merge_requests?"+q.Encode(), nil, &mrs); err != nil {
		return nil, classify(fmt.Sprintf("looking up the merge request from %s in %s", ch.Branch, g.project), err)
	}
	for _, mr := range mrs {
		if mr.SourceBranch == ch.Branch && mr.TargetBranch == ch.Base && mr.State == "opened" {
			return &mr, nil
		}
	}
	return nil, nil
}

func (g *gitlab) get(ctx context.Context, iid int) (PullRequest, error) {
	var mr gitlabMR
	if err := g.call(ctx, http.MethodGet, fmt.Sprintf("%s/merge_requests/%d", g.projectPath(), iid), nil, &mr); err != nil {
		return PullRequest{}, classify(fmt.Sprintf("reading merge request !%d of %s", iid, g.project), err)
	}
	return mr.pullRequest(), nil
}

func (g *gitlab) merge(ctx context.Context, iid int, headSHA string, method MergeMethod) error {
	body := map[string]any{}
	if headSHA != "" {
		body["sha"] = headSHA
	}
	if method == MergeSquash {
		body["squash"] = true
	}
	if err := g.call(ctx, http.MethodPut, fmt.Sprintf("%s/merge_requests/%d/merge", g.projectPath(), iid), body, nil); err != nil {
		return classify(fmt.Sprintf("merging merge request !%d of %s", iid, g.project), err)
	}
	return nil
}

// call sends one API request with the token in PRIVATE-TOKEN and decodes a 2xx answer into out.
func (g *gitlab) call(ctx context.Context, method, path string, in, out any) error {
	if g.token == "" {
		return &httpError{method: method, path: path, status: http.StatusUnauthorized, message: "no token given for GitLab's API"}
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.api+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("PRIVATE-TOKEN", g.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "deliver")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := withRetries(g.http).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Message any    `json:"message"`
			Error   string `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		msg := e.Error
		if e.Message != nil {
			msg = fmt.Sprint(e.Message)
		}
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return &httpError{method: method, path: path, status: resp.StatusCode, message: msg}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decoding the answer: %w", method, path, err)
		}
	}
	return nil
}

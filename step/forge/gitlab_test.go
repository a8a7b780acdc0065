package forge_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/forge"
)

// gitlabAnswer is what GitLab prints when a push opened or updated a merge request (recorded
// from GitLab's post-receive messages); the test's hook prints it the same way.
const gitlabAnswer = `
View merge request for deliver/production/web:
  https://gitlab.example.com/acme/config/-/merge_requests/12
`

// pushWithOptions clones repo from the git server, commits a file, and pushes HEAD to branch
// with opts as git push options, the way deliver pushes, returning what the server printed.
func pushWithOptions(t *testing.T, s *testenv.GitServer, repo, branch string, opts map[string]string) string {
	t.Helper()
	auth := &githttp.BasicAuth{Username: s.Username, Password: s.Password}
	r, err := git.PlainClone(t.TempDir(), false, &git.CloneOptions{URL: s.RepoURL(repo), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := r.Worktree()
	if err := os.WriteFile(filepath.Join(wt.Filesystem.Root(), "change.txt"), []byte(time.Now().String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("change.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Commit("change", &git.CommitOptions{Author: &object.Signature{Name: "d", Email: "d@example.invalid", When: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	var progress bytes.Buffer
	err = r.Push(&git.PushOptions{
		Auth: auth, Progress: &progress, Options: opts,
		RefSpecs: []config.RefSpec{config.RefSpec("+refs/heads/main:refs/heads/" + branch)},
	})
	if err != nil {
		t.Fatalf("push: %v\n%s", err, progress.String())
	}
	return progress.String()
}

// gitlabReads interprets push options the way GitLab does (Gitlab::PushOptions and
// MergeRequests::PushOptionsHandlerService): "namespace.key=value", an empty or missing value
// meaning true, and a literal \n in the description meaning a line break.
func gitlabReads(options []string) map[string]string {
	re := regexp.MustCompile(`^([^.]+)\.([^=]+)=?(.*)$`)
	out := map[string]string{}
	for _, o := range options {
		m := re.FindStringSubmatch(o)
		if m == nil || m[1] != "merge_request" {
			continue
		}
		v := strings.TrimSpace(m[3])
		if v == "" {
			v = "true"
		}
		if m[2] == "description" {
			v = strings.ReplaceAll(v, `\n`, "\n")
		}
		out[m[2]] = v
	}
	return out
}

func TestGitLabPushOptions(t *testing.T) {
	t.Parallel()
	s := testenv.NewGitServer(t)
	if _, err := s.CreateRepo("acme/config", "main", ""); err != nil {
		t.Fatal(err)
	}
	// GitLab advertises push options; plain git does only when told to.
	if out, err := exec.Command("git", "config", "--file", filepath.Join(s.BareDir("acme/config"), "config"),
		"receive.advertisePushOptions", "true").CombinedOutput(); err != nil {
		t.Fatalf("git config: %v: %s", err, out)
	}
	record := filepath.Join(t.TempDir(), "options")
	hook := `i=0
while [ "$i" -lt "${GIT_PUSH_OPTION_COUNT:-0}" ]; do
  eval "v=\${GIT_PUSH_OPTION_$i}"
  printf '%s\0' "$v" >>'` + record + `'
  i=$((i+1))
done
printf '%s\n' '` + strings.ReplaceAll(gitlabAnswer, "\n", "' '") + `' >&2
`
	if err := s.SetHook("acme/config", "pre-receive", hook); err != nil {
		t.Fatal(err)
	}
	c, err := forge.New(forge.Options{RepoURL: "https://gitlab.example.com/acme/config.git"})
	if err != nil {
		t.Fatal(err)
	}
	body := "## Images\n\n| service | from | to |\n|---|---|---|\n| web | `1.4.2` | `1.4.3` |\n\n```diff\n-\tnewTag: 1.4.2\n+\tnewTag: 1.4.3\n```\nré-déployé ✓"
	ch := forge.Change{
		Branch: "deliver/production/web", Base: "main",
		Title: "deliver(production): web 1.4.2 -> 1.4.3\nsecond line", Body: body,
		AutoMerge: true, DeleteBranch: true,
	}
	output := pushWithOptions(t, s, "acme/config", ch.Branch, c.PushOptions(ch))

	raw, err := os.ReadFile(record)
	if err != nil {
		t.Fatalf("the hook recorded no push options: %v", err)
	}
	got := gitlabReads(strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00"))
	want := map[string]string{
		"create":                       "true",
		"target":                       "main",
		"title":                        "deliver(production): web 1.4.2 -> 1.4.3 second line",
		"description":                  strings.ReplaceAll(body, "\t", "    "),
		"merge_when_pipeline_succeeds": "true",
		"remove_source_branch":         "true",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("GitLab reads merge_request.%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("GitLab reads %d merge_request options %v, want %d", len(got), got, len(want))
	}

	// Without a token, the merge request is the one GitLab named in its answer.
	pr, err := c.Sync(context.Background(), ch, output)
	if err != nil {
		t.Fatalf("Sync: %v (push output %q)", err, output)
	}
	if pr.Number != 12 || pr.URL != "https://gitlab.example.com/acme/config/-/merge_requests/12" || pr.State != forge.StateOpen || !pr.AutoMerge {
		t.Errorf("Sync = %+v; want !12 from GitLab's answer", pr)
	}

	// A server that does not take the options opens nothing, and deliver says so.
	if _, err := s.CreateRepo("plain", "main", ""); err != nil {
		t.Fatal(err)
	}
	output = pushWithOptions(t, s, "plain", ch.Branch, c.PushOptions(ch))
	if _, err := c.Sync(context.Background(), ch, output); !errors.Is(err, forge.ErrRefused) || !strings.Contains(err.Error(), "opened no merge request") {
		t.Errorf("Sync after a push the server ignored: %v; want ErrRefused saying no merge request was opened", err)
	}
}

func TestGitLabSyncReportsPushOptionWarnings(t *testing.T) {
	t.Parallel()
	c, err := forge.New(forge.Options{RepoURL: "https://gitlab.example.com/acme/config.git"})
	if err != nil {
		t.Fatal(err)
	}
	// GitLab's answer when the push options could not be applied (recorded text).
	output := `
========================================================================

     WARNINGS: Error encountered with push options
 'merge_request.create' 'merge_request.target=main': Target branch
              acme/config:main does not exist

========================================================================
`
	_, err = c.Sync(context.Background(), forge.Change{Branch: "deliver/production/web", Base: "main", Title: "t"}, output)
	if !errors.Is(err, forge.ErrRefused) || !strings.Contains(err.Error(), "Target branch") {
		t.Fatalf("Sync = %v; want ErrRefused quoting GitLab's warning", err)
	}
}

func TestGitLabPushOptionsFitOnePacketLine(t *testing.T) {
	t.Parallel()
	c, err := forge.New(forge.Options{RepoURL: "https://gitlab.example.com/acme/config.git"})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("+ a long overlay diff line\n", 10000)
	opts := c.PushOptions(forge.Change{Branch: "b", Base: "main", Title: "t", Body: huge})
	d := opts["merge_request.description"]
	// A pkt-line carries at most 65516 bytes of data; "merge_request.description=" comes first.
	if n := len("merge_request.description=") + len(d); n > 65516 {
		t.Fatalf("description option is %d bytes, more than one pkt-line holds", n)
	}
	if !strings.Contains(d, "cut") {
		t.Errorf("a cut description does not say it was cut: ...%s", d[len(d)-80:])
	}
}

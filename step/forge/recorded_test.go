package forge_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deliverhq/deliver/step/forge"
)

// The tests in this file check requests that Gitea does not serve (GitHub's GraphQL auto-merge,
// GitHub's PUT merge, GitLab's merge request API) against recorded exchanges in testdata/: each
// request deliver sends must match the recorded one (method, path and query, the listed
// headers, the JSON body), in order, and gets the recorded answer. Everything Gitea serves is
// tested against a real Gitea instead (gitea_test.go).

type exchange struct {
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Header   map[string]string `json:"header"`
	Body     any               `json:"body"`
	Status   int               `json:"status"`
	Response json.RawMessage   `json:"response"`
}

// recorded serves the exchanges of testdata/name in order and fails t on any other request. At
// the end of the test every exchange must have been used.
func recorded(t *testing.T, name string) *httptest.Server {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Exchanges []exchange `json:"exchanges"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	var mu sync.Mutex
	next := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got := r.Method + " " + r.URL.RequestURI()
		if next >= len(file.Exchanges) {
			t.Errorf("%s: unexpected request %s after the last recorded exchange", name, got)
			http.Error(w, "no more recorded exchanges", http.StatusTeapot)
			return
		}
		ex := file.Exchanges[next]
		next++
		if want := ex.Method + " " + ex.Path; got != want {
			t.Errorf("%s: exchange %d: request %s, recorded %s", name, next, got, want)
		}
		for k, v := range ex.Header {
			if r.Header.Get(k) != v {
				t.Errorf("%s: exchange %d: header %s = %q, recorded %q", name, next, k, r.Header.Get(k), v)
			}
		}
		body, _ := io.ReadAll(r.Body)
		if ex.Body != nil {
			var gotBody any
			if err := json.Unmarshal(body, &gotBody); err != nil || !reflect.DeepEqual(gotBody, ex.Body) {
				t.Errorf("%s: exchange %d: body %s, recorded %v", name, next, body, ex.Body)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ex.Status)
		_, _ = w.Write(ex.Response)
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		if next != len(file.Exchanges) {
			t.Errorf("%s: %d of %d recorded exchanges used", name, next, len(file.Exchanges))
		}
	})
	return srv
}

func TestRecordedGitHubAutoMerge(t *testing.T) {
	t.Parallel()
	srv := recorded(t, "github-automerge.json")
	c, err := forge.New(forge.Options{Kind: forge.GitHub, RepoURL: "https://github.com/acme/config.git", APIURL: srv.URL + "/", Token: "ghs_t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := c.Sync(context.Background(), forge.Change{
		Branch: "deliver/production/web", Base: "main", Title: "deliver(production): web 1.4.2 -> 1.4.3",
		Body: "web: 1.4.2 -> 1.4.3", AutoMerge: true, MergeMethod: forge.MergeSquash,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := forge.PullRequest{Number: 7, URL: "https://github.com/acme/config/pull/7", State: forge.StateOpen,
		HeadSHA: "1111111111111111111111111111111111111111", AutoMerge: true}
	if !reflect.DeepEqual(pr, want) {
		t.Fatalf("Sync = %+v, want %+v", pr, want)
	}
}

func TestRecordedGitHubEnterpriseMergesACleanPullRequest(t *testing.T) {
	t.Parallel()
	srv := recorded(t, "github-automerge-clean.json")
	c, err := forge.New(forge.Options{Kind: forge.GitHub, RepoURL: "https://ghe.acme.corp/acme/config.git", APIURL: srv.URL + "/api/v3/", Token: "ghs_t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := c.Sync(context.Background(), forge.Change{
		Branch: "deliver/production/web", Base: "main", Title: "deliver(production): web 1.4.2 -> 1.4.4",
		Body: "web: 1.4.2 -> 1.4.4", AutoMerge: true,
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	if pr.Number != 7 || pr.State != forge.StateMerged || pr.MergeCommitSHA != "3333333333333333333333333333333333333333" {
		t.Fatalf("Sync = %+v; want #7 merged at 3333…", pr)
	}
}

func TestRecordedGitHubAutoMergeNotAllowed(t *testing.T) {
	t.Parallel()
	srv := recorded(t, "github-automerge-not-allowed.json")
	c, err := forge.New(forge.Options{Kind: forge.GitHub, RepoURL: "https://github.com/acme/config.git", APIURL: srv.URL + "/", Token: "ghs_t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := c.Sync(context.Background(), forge.Change{
		Branch: "deliver/production/web", Base: "main", Title: "deliver(production): web 1.4.2 -> 1.4.3",
		Body: "web: 1.4.2 -> 1.4.3", AutoMerge: true,
	}, "")
	if !errors.Is(err, forge.ErrRefused) || !strings.Contains(err.Error(), "Allow auto-merge") || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("Sync error = %v; want ErrRefused with GitHub's words and the setting to turn on", err)
	}
	if pr.Number != 9 {
		t.Errorf("Sync = %+v; want the open pull request #9 reported with the error", pr)
	}
}

func TestRecordedGitLabWaitMerged(t *testing.T) {
	t.Parallel()
	srv := recorded(t, "gitlab-merge-request.json")
	c, err := forge.New(forge.Options{RepoURL: "https://gitlab.com/acme/platform/config.git", APIURL: srv.URL + "/api/v4/", Token: "glpat-s3cr3t-t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	var polls []forge.PullRequest
	pr, err := c.WaitMerged(context.Background(), 12, forge.WaitOptions{
		Interval: 10 * time.Millisecond,
		OnPoll:   func(_ context.Context, pr forge.PullRequest) error { polls = append(polls, pr); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(polls) != 1 || polls[0].State != forge.StateOpen || !polls[0].AutoMerge || polls[0].HeadSHA != "5555555555555555555555555555555555555555" {
		t.Errorf("polls = %+v; want one poll of the open merge request with merge-when-pipeline-succeeds", polls)
	}
	want := forge.PullRequest{Number: 12, URL: "https://gitlab.com/acme/platform/config/-/merge_requests/12", State: forge.StateMerged,
		HeadSHA: "5555555555555555555555555555555555555555", MergeCommitSHA: "6666666666666666666666666666666666666666", AutoMerge: true}
	if !reflect.DeepEqual(pr, want) {
		t.Fatalf("WaitMerged = %+v, want %+v", pr, want)
	}
}

func TestRecordedGitHubCreateRace(t *testing.T) {
	t.Parallel()
	srv := recorded(t, "github-create-race.json")
	c, err := forge.New(forge.Options{Kind: forge.GitHub, RepoURL: "https://github.com/acme/config.git", APIURL: srv.URL + "/", Token: "ghs_t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	pr, err := c.Sync(context.Background(), forge.Change{
		Branch: "deliver/production/web", Base: "main", Title: "deliver(production): web 1.4.2 -> 1.4.4", Body: "web: 1.4.2 -> 1.4.4",
	}, "")
	if err != nil || pr.Number != 11 || pr.State != forge.StateOpen {
		t.Fatalf("Sync = %+v, %v; want the pull request the other run opened, #11", pr, err)
	}
}

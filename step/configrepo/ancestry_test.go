package configrepo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/configrepo"
)

// pushCommits makes n commits in the clone work (on its HEAD) and pushes them to branch; it
// returns their hashes, oldest first.
func pushEmptyCommits(t *testing.T, work, branch string, n int) []string {
	t.Helper()
	var hashes []string
	for i := 0; i < n; i++ {
		gitCmd(t, work, "-c", "user.name=other", "-c", "user.email=o@o", "commit", "-q", "--allow-empty", "-m", fmt.Sprintf("other %s %d", branch, i))
	}
	if n > 0 {
		out := gitCmd(t, work, "rev-list", "--reverse", fmt.Sprintf("-%d", n), "HEAD")
		hashes = strings.Fields(out)
	}
	gitCmd(t, work, "push", "-q", "origin", "HEAD:"+branch)
	return hashes
}

// TestContains: whether the engine's revision contains deliver's commit is decided from the
// clone when it can be (no request to the server), and by deepening the shallow clone only as
// far as the two commits need otherwise, whichever side is newer.
func TestContains(t *testing.T) {
	t.Parallel()
	type history struct {
		gs        *testenv.GitServer
		repo      *configrepo.Repo
		before    []string // pushed before the clone, oldest first; before[len-1] is our parent
		ours      string   // deliver's commit
		after     []string // pushed by others after ours, oldest first
		elsewhere string   // a commit on another branch, not on main
	}
	setup := func(t *testing.T, nBefore, nAfter int) *history {
		ctx := context.Background()
		gs := testenv.NewGitServer(t)
		url := newRepo(t, gs, "config")
		work := t.TempDir()
		gitCmd(t, work, "clone", "-q", authURL(gs, url), ".")
		h := &history{gs: gs, before: pushEmptyCommits(t, work, "main", nBefore)}
		repo, err := configrepo.Clone(ctx, opts(gs, url))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = repo.Close() })
		res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0"))
		if err != nil || !res.Changed {
			t.Fatalf("update: %+v, %v", res, err)
		}
		h.repo, h.ours = repo, res.Commit
		gitCmd(t, work, "pull", "-q", "--ff-only", "origin", "main")
		h.after = pushEmptyCommits(t, work, "main", nAfter)
		gitCmd(t, work, "checkout", "-q", "-b", "side", h.before[0])
		h.elsewhere = pushEmptyCommits(t, work, "side", 1)[0]
		return h
	}
	tests := []struct {
		name            string
		before, after   int
		revision        func(h *history) string
		want            bool
		wantErr         error
		noRequests      bool
		maxRequestsOver int // at most this many HTTP requests to the server (0: no bound)
	}{
		{name: "the engine has our commit", before: 1, revision: func(h *history) string { return h.ours }, want: true, noRequests: true},
		{name: "the engine is at our parent", before: 2, revision: func(h *history) string { return h.before[1] }, want: false, noRequests: true},
		{name: "the engine lags 30 commits behind", before: 31, revision: func(h *history) string { return h.before[0] }, want: false, maxRequestsOver: 6},
		{name: "one later push by another pipeline", before: 1, after: 1, revision: func(h *history) string { return h.after[0] }, want: true, maxRequestsOver: 4},
		{name: "40 later pushes by other pipelines", before: 1, after: 40, revision: func(h *history) string { return h.after[39] }, want: true, maxRequestsOver: 8},
		{name: "a later push, long history", before: 150, after: 2, revision: func(h *history) string { return h.after[1] }, want: true, maxRequestsOver: 4},
		{name: "a commit that is not on the branch", before: 1, revision: func(h *history) string { return h.elsewhere }, wantErr: configrepo.ErrUndecided},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := setup(t, tt.before, tt.after)
			requests := h.gs.Requests()
			got, err := h.repo.Contains(context.Background(), tt.revision(h), h.ours)
			made := h.gs.Requests() - requests
			t.Logf("%d requests to the git server", made)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Contains = %v, %v; want an error wrapping %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Contains = %v, %v; want %v", got, err, tt.want)
			}
			if tt.noRequests && made != 0 {
				t.Errorf("Contains made %d requests to the git server, want none (the clone holds both commits)", made)
			}
			if tt.maxRequestsOver > 0 && made > int64(tt.maxRequestsOver) {
				t.Errorf("Contains made %d requests to the git server, want at most %d", made, tt.maxRequestsOver)
			}
			// Asked the other way round, the answer is the opposite (or the same: equal commits).
			back, err := h.repo.Contains(context.Background(), h.ours, tt.revision(h))
			if err != nil || back == got && tt.revision(h) != h.ours {
				t.Errorf("Contains the other way round = %v, %v", back, err)
			}
		})
	}
}

package configrepo_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/configrepo"
)

// TestHistory: History reads the branch newest first from a depth-1 clone, deepening it only
// as far as the visitor asks, and reads the whole branch when asked to.
func TestHistory(t *testing.T) {
	t.Parallel()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "history")
	pushCommits(t, gs, url, 100)
	for _, tt := range []struct {
		name  string
		want  int   // commits to visit before stopping; 0: all
		reads int64 // at most this many fetches of history
	}{
		{name: "tip only", want: 1, reads: 0},
		{name: "a few", want: 20, reads: 1},
		{name: "everything", want: 0, reads: 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			repo, err := configrepo.Clone(context.Background(), opts(gs, url))
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			before := gs.Requests()
			var seen []configrepo.Commit
			err = repo.History(context.Background(), func(c configrepo.Commit) bool {
				seen = append(seen, c)
				return tt.want == 0 || len(seen) < tt.want
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.want > 0 && len(seen) != tt.want || tt.want == 0 && len(seen) != 101 {
				t.Fatalf("visited %d commits", len(seen))
			}
			for i, c := range seen[:min(len(seen), 100)] {
				if want := fmt.Sprintf("c%d\n", 99-i); c.Message != want || c.Author != "t" || c.When.IsZero() || len(c.Hash) != 40 {
					t.Fatalf("commit %d: %+v, want message %q", i, c, want)
				}
			}
			if n := gs.Requests() - before; n > 2*tt.reads {
				t.Errorf("%d requests to the server for %d commits", n, len(seen))
			}
		})
	}
}

package configrepo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/configrepo"
)

// The limit the large-file tests run with, so that their "large" files stay small.
const testMaxFile = 4096

// serverKinds are the git servers the fetches must work with: one that serves partial clones
// (GitHub, GitLab, Gitea) and one that does not (git's default).
var serverKinds = []struct {
	name string
	opts []testenv.GitOption
}{
	{"server filters", nil},
	{"server without filters", []testenv.GitOption{testenv.WithoutFilters()}},
}

// TestLargeFilesAreNotFetched: a file over MaxFileSize is neither fetched nor written, by a
// server that supports partial clone (it leaves the blob out) and by one that does not (the
// client drops it from the pack); the work tree holds a placeholder of at least its size,
// commits keep its blob, and a lost race moves the placeholders to the new tip.
func TestLargeFilesAreNotFetched(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("a line of a file larger than the limit\n", 200) // 7.8 kB
	for _, tt := range serverKinds {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			gs := testenv.NewGitServer(t, tt.opts...)
			url, err := gs.CreateRepo("large", "main", seed(t, map[string]string{
				"README.md":          "config\n",
				"data/big.txt":       big,
				"data/big-again.txt": big + "and one more line\n",
				"data/small.txt":     "small\n",
			}))
			if err != nil {
				t.Fatal(err)
			}
			o := opts(gs, url)
			o.MaxFileSize = testMaxFile
			repo, err := configrepo.Clone(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			bigHash := blobHash(t, gs, "large", "data/big.txt")
			if _, err := repo.Git().BlobObject(bigHash); !errors.Is(err, plumbing.ErrObjectNotFound) {
				t.Errorf("the clone holds the large blob: %v", err)
			}
			// The placeholder is the blob's size when the client saw it, else just over the
			// limit: either way a reader with the limit refuses it by its size.
			for _, name := range []string{"big.txt", "big-again.txt"} {
				fi, err := os.Stat(filepath.Join(repo.Dir(), "data", name))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() <= testMaxFile {
					t.Errorf("placeholder of data/%s is %d bytes, not more than the limit %d", name, fi.Size(), testMaxFile)
				}
			}
			// An edit of a placeholder is refused: it cannot be made from the real file.
			before, _ := gs.Head("large", "main")
			if _, err := repo.Update(ctx, author, appendLine("data/big.txt", "edited")); err == nil || !strings.Contains(err.Error(), "placeholder") {
				t.Errorf("editing a placeholder: err = %v, want a refusal", err)
			}
			if after, _ := gs.Head("large", "main"); after != before {
				t.Errorf("the branch moved from %s to %s", before, after)
			}
			if got, _ := os.ReadFile(filepath.Join(repo.Dir(), "data", "small.txt")); string(got) != "small\n" {
				t.Errorf("data/small.txt = %q", got)
			}

			// Another pipeline pushes first; the update loses the race, moves to the new tip and
			// lands without touching the large files.
			other, err := configrepo.Clone(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			if _, err := other.Update(ctx, author, appendLine("data/small.txt", "pushed by the other pipeline")); err != nil {
				t.Fatal(err)
			}
			res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Attempts != 2 {
				t.Errorf("Attempts = %d, want 2 (the first lost to the other push)", res.Attempts)
			}
			for path, want := range map[string]string{
				"data/big.txt":       big,
				"data/big-again.txt": big + "and one more line\n",
				"data/small.txt":     "small\npushed by the other pipeline\n",
				"list.txt":           "web=1.0\n",
			} {
				got, err := gs.ReadFile("large", "main", path)
				if err != nil || string(got) != want {
					t.Errorf("%s on the server = %d bytes, %v; want the %d bytes it should hold", path, len(got), err, len(want))
				}
			}
			if got, _ := os.ReadFile(filepath.Join(repo.Dir(), "data", "small.txt")); string(got) != "small\npushed by the other pipeline\n" {
				t.Errorf("after the lost race the work tree's data/small.txt = %q, not the new tip's", got)
			}
			gitCmd(t, gs.BareDir("large"), "fsck", "--no-progress", "--strict")
		})
	}
}

// blobHash is the blob of path at the tip of main in repository name.
func blobHash(t *testing.T, gs *testenv.GitServer, name, path string) plumbing.Hash {
	t.Helper()
	return plumbing.NewHash(strings.TrimSpace(gitCmd(t, gs.BareDir(name), "rev-parse", "main:"+path)))
}

// TestMaxFileSizeCoversBuilds: the clone leaves out only files that a kustomize build would
// refuse by their size anyway, so a placeholder is never built from.
func TestMaxFileSizeCoversBuilds(t *testing.T) {
	if configrepo.DefaultMaxFileSize < kustomize.MaxBuildFileSize {
		t.Fatalf("DefaultMaxFileSize %d is below kustomize.MaxBuildFileSize %d: a placeholder could be read as content",
			configrepo.DefaultMaxFileSize, kustomize.MaxBuildFileSize)
	}
}

// TestErrorPagesAreCut: a server (or a proxy in front of it) that answers with an enormous
// error page gives an error of a few KB, classified as before, and the page is not read whole
// into memory. It does not run in parallel, so that what it allocates is measurable.
func TestErrorPagesAreCut(t *testing.T) {
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "huge-error")
	for _, tt := range []struct {
		status int
		want   error
		// shown: the error holds the start of the page (go-git shows the page of a 401 or
		// 403, not of a 500).
		shown bool
	}{
		{401, configrepo.ErrAuth, true},
		{500, configrepo.ErrUnreachable, false},
	} {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			p := faultproxy.New(t, strings.TrimPrefix(gs.URL, "http://"))
			p.HTTPStatusBody(tt.status, faultproxy.HugeBody(100<<20))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := configrepo.Clone(context.Background(), opts(gs, strings.Replace(url, gs.URL, "http://"+p.Addr, 1)))
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if n := len(err.Error()); n > 8<<10 {
				t.Errorf("the error is %d bytes long, want at most 8 KiB", n)
			}
			if tt.shown && (!strings.Contains(err.Error(), "faultproxy: a very long error page") || !strings.Contains(err.Error(), "cut: the response went on after")) {
				t.Errorf("the error does not show the start of the page and that it was cut: %.300s", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
				t.Errorf("the clone allocated %d MiB for a 100 MiB error page: it read the page", alloc>>20)
			}
		})
	}
}

// TestDeepenReadsHistory: Deepen fetches older commits (their messages, not their files) as
// far as asked or as the history goes, from a server with or without filters.
func TestDeepenReadsHistory(t *testing.T) {
	t.Parallel()
	for _, tt := range serverKinds {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			gs := testenv.NewGitServer(t, tt.opts...)
			url := newRepo(t, gs, "history")
			pushCommits(t, gs, url, 40)
			repo, err := configrepo.Clone(ctx, opts(gs, url))
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			for _, tc := range []struct{ depth, want int }{{8, 8}, {32, 32}, {100, 41}} {
				n, err := repo.Deepen(ctx, tc.depth)
				if err != nil || n != tc.want {
					t.Fatalf("Deepen(%d) = %d, %v; want %d", tc.depth, n, err, tc.want)
				}
			}
			head, _ := repo.Head()
			c, err := repo.Git().CommitObject(plumbing.NewHash(head))
			for i := 39; err == nil && i >= 30; i-- {
				if strings.TrimSpace(c.Message) != fmt.Sprint("c", i) {
					t.Fatalf("commit %s says %q, want c%d", c.Hash, c.Message, i)
				}
				c, err = c.Parent(0)
			}
			if err != nil {
				t.Fatal(err)
			}
			// The files stay at the tip, and an update still works on the deepened clone.
			if res, err := repo.Update(ctx, author, appendLine("list.txt", "web=1.0")); err != nil || !res.Changed {
				t.Fatalf("update after Deepen: %+v, %v", res, err)
			}
		})
	}
}

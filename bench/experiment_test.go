package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/configrepo"
)

// TestContentionExperiment reproduces P2's contention in one process with deliver's own
// configrepo and kustomize packages, to see what its wall time is made of: the backoff
// between lost races and the cost of the render check each attempt runs. It compares
// deliver's backoff with a wider one, and the full render with one that costs what a build
// without the images: list costs. It only runs with DELIVER_BENCH_EXPERIMENTS=1:
//
//	DELIVER_BENCH_EXPERIMENTS=1 go test -run ContentionExperiment -v ./bench
func TestContentionExperiment(t *testing.T) {
	if os.Getenv("DELIVER_BENCH_EXPERIMENTS") == "" {
		t.Skip("set DELIVER_BENCH_EXPERIMENTS=1 to run")
	}
	const n = 32
	git := testenv.NewGitServer(t)
	f := Fixture{Services: services(n), Env: "p2", NS: "p2", Registry: "registry.example.com", Tag: "1.0.0"}
	cheapRoot := writeFixture(t, Fixture{Services: services(n), Env: "p2", NS: "p2"})
	noImages(t, filepath.Join(cheapRoot, "overlays", "p2", "kustomization.yaml"))
	// deliverBackoff is deliver's backoff before F2; wide is the one it has since.
	deliverBackoff := wait.Backoff{Duration: 20 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: 400 * time.Millisecond}
	wide := configrepo.DefaultBackoff()
	for _, v := range []struct {
		name    string
		backoff wait.Backoff
		// fresh re-fetches the tip after the backoff sleep (configrepo.Update resets to the
		// tip it fetched before sleeping).
		fresh, cheap bool
	}{
		{"deliver before 203ae04 (stale tip after backoff), full render", deliverBackoff, false, false},
		{"fresh tip after backoff, full render", deliverBackoff, true, false},
		{"fresh tip, backoff 50ms×2 cap 2s, full render", wide, true, false},
		{"fresh tip, render without images:", deliverBackoff, true, true},
		{"fresh tip, backoff 50ms×2 cap 2s, render w/o images:", wide, true, true},
	} {
		if only := os.Getenv("DELIVER_BENCH_VARIANT"); only != "" && !strings.Contains(v.name, only) {
			continue
		}
		seed := writeFixture(t, f)
		name := nextRepo("exp")
		url, err := git.CreateRepo(name, "main", seed)
		if err != nil {
			t.Fatal(err)
		}
		var attempts atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = func() error {
					ctx := context.Background()
					repo, err := configrepo.Clone(ctx, configrepo.Options{URL: url, Branch: "main", TempDir: t.TempDir(),
						Auth: configrepo.Auth{Username: git.Username, Password: git.Password}, Backoff: v.backoff, MaxAttempts: maxAttempts(v.fresh), Timeout: 5 * time.Minute})
					if err != nil {
						return err
					}
					defer repo.Close()
					svc := f.Services[i]
					edit := func(ctx context.Context, dir string) (string, []string, error) {
						img := types.Image{Name: svc, NewName: "registry.example.com/team/" + svc, NewTag: "2.0.0"}
						if _, err := kustomize.SetImages(filepath.Join(dir, "overlays", "p2"), []types.Image{img}); err != nil {
							return "", nil, err
						}
						root := dir
						if v.cheap {
							root = cheapRoot
						}
						if _, err := kustomize.Build(root, "overlays/p2"); err != nil {
							return "", nil, err
						}
						return "deploy " + svc, []string{"overlays/p2/kustomization.yaml"}, nil
					}
					author := object.Signature{Name: "bench", Email: "bench@example.invalid", When: time.Now()}
					if !v.fresh {
						res, err := repo.Update(ctx, author, edit)
						attempts.Add(int64(res.Attempts))
						return err
					}
					// The same loop as Update, with one Update attempt at a time and a fetch
					// of the newest tip after each backoff sleep.
					b := v.backoff
					b.Steps = 1 << 20
					for {
						res, err := repo.Update(ctx, author, edit)
						attempts.Add(int64(res.Attempts))
						if !errors.Is(err, configrepo.ErrConflict) {
							return err
						}
						time.Sleep(b.Step())
						if _, err := repo.Fetch(ctx); err != nil {
							return err
						}
					}
				}()
			}()
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		wall := time.Since(t0)
		for _, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", v.name, err)
			}
		}
		log, err := git.Log(name, "main")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%-55s N=%d: %d commits landed, %d push attempts, wall %s", v.name, n, len(log)-1, attempts.Load(), ms(wall))
	}
}

func noImages(tb testing.TB, path string) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	cut := strings.Index(string(data), "images:")
	if cut < 0 {
		tb.Fatal(fmt.Errorf("%s has no images:", path))
	}
	if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
		tb.Fatal(err)
	}
}

// maxAttempts is the configrepo limit of one Update call: one attempt per call when the
// experiment runs the retry loop itself.
func maxAttempts(ownLoop bool) int {
	if ownLoop {
		return 1
	}
	return 200
}

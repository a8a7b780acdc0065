package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/configrepo"
)

// TestContentionExperiment reproduces P2's contention in one process with deliver's own
// configrepo and kustomize packages (fetch, edit, render check, commit, push, retrying on the
// newest tip), varying only the backoff between lost races. It only runs with
// DELIVER_BENCH_EXPERIMENTS=1; DELIVER_BENCH_VARIANT=<substring> picks variants and
// DELIVER_BENCH_TRIALS (default 1) repeats each:
//
//	DELIVER_BENCH_EXPERIMENTS=1 go test -run ContentionExperiment -v ./bench
func TestContentionExperiment(t *testing.T) {
	if os.Getenv("DELIVER_BENCH_EXPERIMENTS") == "" {
		t.Skip("set DELIVER_BENCH_EXPERIMENTS=1 to run")
	}
	const n = 32
	trials := 1
	if v, err := strconv.Atoi(os.Getenv("DELIVER_BENCH_TRIALS")); err == nil && v > 0 {
		trials = v
	}
	git := testenv.NewGitServer(t)
	f := Fixture{Services: services(n), Env: "p2", NS: "p2", Registry: "registry.example.com", Tag: "1.0.0"}
	for _, v := range []struct {
		name    string
		backoff wait.Backoff
	}{
		{"20ms x1.5 cap 400ms (before F2)", wait.Backoff{Duration: 20 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: 400 * time.Millisecond}},
		{"50ms x2 cap 2s", wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Jitter: 1, Cap: 2 * time.Second}},
		{"50ms x2 cap 1s (default)", configrepo.DefaultBackoff()},
		{"25ms x2 cap 1s", wait.Backoff{Duration: 25 * time.Millisecond, Factor: 2, Jitter: 1, Cap: time.Second}},
		{"100ms x2 cap 2s", wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Jitter: 1, Cap: 2 * time.Second}},
		{"100ms x1.5 cap 1s", wait.Backoff{Duration: 100 * time.Millisecond, Factor: 1.5, Jitter: 1, Cap: time.Second}},
	} {
		if only := os.Getenv("DELIVER_BENCH_VARIANT"); only != "" && !strings.Contains(v.name, only) {
			continue
		}
		for trial := 1; trial <= trials; trial++ {
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
							Auth: configrepo.Auth{Username: git.Username, Password: git.Password}, Backoff: v.backoff, MaxAttempts: 200, Timeout: 5 * time.Minute})
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
							if _, err := kustomize.Build(dir, "overlays/p2"); err != nil {
								return "", nil, err
							}
							return "deploy " + svc, []string{"overlays/p2/kustomization.yaml"}, nil
						}
						author := configrepo.Signature{Name: "bench", Email: "bench@example.invalid", When: time.Now()}
						res, err := repo.Update(ctx, author, edit)
						attempts.Add(int64(res.Attempts))
						return err
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
			t.Logf("%-32s N=%d trial %d: %d commits landed, %d push attempts, wall %s", v.name, n, trial, len(log)-1, attempts.Load(), ms(wall))
		}
	}
}

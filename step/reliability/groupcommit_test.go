package reliability_test

import (
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/release"
)

// TestKillLanderAtRandom: deploys race for one branch and group commit lands the losers'
// changes together; the run that lands other runs' changes is killed with SIGKILL at a random
// moment of its landing (re-applying, pushing, or after), in at least 20 trials. Then: every
// other deploy succeeds (a run waiting behind the dead one takes the queue over), nothing is
// lost (every image the runs set is in the overlay) and nothing is duplicated (one commit per
// image, each change id once on the branch; the history linear and every commit rendering),
// and re-running the killed deploy converges: it succeeds and the queue is empty.
func TestKillLanderAtRandom(t *testing.T) {
	t.Parallel()
	const want, maxTrials, n = 20, 60, 5
	var mu sync.Mutex
	killed, trials := 0, 0
	sem := make(chan struct{}, 3)
	var wg sync.WaitGroup
	for trial := 1; trial <= maxTrials; trial++ {
		mu.Lock()
		enough := killed >= want
		mu.Unlock()
		if enough {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t.Run(fmt.Sprintf("trial-%02d", trial), func(t *testing.T) {
				if killLanderTrial(t, n) {
					mu.Lock()
					killed++
					mu.Unlock()
				}
				mu.Lock()
				trials++
				mu.Unlock()
			})
		}()
		if trial%3 == 0 {
			wg.Wait() // let the kills counted so far decide whether more trials are needed
		}
	}
	wg.Wait()
	t.Logf("%d trials, %d with a run killed while landing other runs' changes", trials, killed)
	if killed < want {
		t.Errorf("only %d of %d trials killed a run while it landed other runs' changes; want %d", killed, trials, want)
	}
}

// killLanderTrial runs one trial; it reports whether a run was killed while landing.
func killLanderTrial(t *testing.T, n int) bool {
	var services []string
	for i := 0; i < n; i++ {
		services = append(services, fmt.Sprintf("svc-%02d", i))
	}
	s := newServers(t, fixture.App{Services: services, WithServices: true, Envs: map[string]string{"staging": "stg"}}, fixture.Options{})
	digests := map[string]string{}
	deploys := map[string][]string{}
	for _, svc := range services {
		digests[svc] = s.PushImage(t, "team/"+svc, "1.0.0")
		deploys[svc] = args([]string{"deploy", "--env", "staging", "--no-apply", "--image", svc + "=" + s.Reg.Ref("team/"+svc, "1.0.0")}, s.GitArgs())
	}
	procs := make([]*proc, n)
	for i, svc := range services {
		procs[i] = start(t, opts{deadline: 3 * time.Minute}, deploys[svc]...)
	}
	// The first run seen landing another run's change is killed at a random moment after.
	victim := -1
	for deadline := time.Now().Add(2 * time.Minute); victim < 0 && time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		running := 0
		for i, p := range procs {
			select {
			case <-p.done:
				continue
			default:
			}
			running++
			if strings.Contains(p.stderr.String(), "'s change ") {
				victim = i
				break
			}
		}
		if running == 0 {
			break
		}
	}
	if victim >= 0 {
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
		procs[victim].signal(syscall.SIGKILL)
	}
	died := false
	for i, p := range procs {
		r := p.wait()
		if i == victim {
			// The kill may come after it finished.
			died = r.signal == syscall.SIGKILL
			if !died && r.code != 0 {
				t.Errorf("the run to kill, %s, ended otherwise:\n%s", services[i], r)
			}
			continue
		}
		if r.code != 0 {
			t.Errorf("deploy of %s:\n%s", services[i], r)
		}
	}
	if victim >= 0 {
		// Re-running the killed deploy converges, whatever became of its queued change.
		if r := run(t, nil, deploys[services[victim]]...); r.code != 0 {
			t.Errorf("re-running the killed deploy of %s:\n%s", services[victim], r)
		}
	}
	// Nothing lost.
	dir := t.TempDir()
	fixture.WriteFiles(t, dir, map[string]string{"kustomization.yaml": s.File(t, "overlays/staging/kustomization.yaml")})
	_, images, err := kustomize.ReadImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, img := range images {
		got[img.Name] = img.Digest
	}
	for _, svc := range services {
		if got[svc] != digests[svc] {
			t.Errorf("%s: digest %q in the overlay, want %q (lost)", svc, got[svc], digests[svc])
		}
	}
	// Nothing duplicated: one commit per image, each change id once.
	checkHistory(t, s, "overlays/staging", s.Head(t))
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	perImage, ids := map[string]int{}, map[string]int{}
	for _, c := range log {
		rec, err := release.Parse(c.Message)
		if err != nil {
			continue // the seed
		}
		for _, im := range rec.Images {
			perImage[im.Name]++
		}
		for _, l := range strings.Split(c.Message, "\n") {
			if id, ok := strings.CutPrefix(l, "Deliver-Change-Id: "); ok {
				ids[id]++
			}
		}
	}
	for _, svc := range services {
		if perImage[svc] != 1 {
			t.Errorf("%s is set by %d commits, want 1", svc, perImage[svc])
		}
	}
	for id, c := range ids {
		if c != 1 {
			t.Errorf("change %s is on the branch %d times", id, c)
		}
	}
	out, err := exec.Command("git", "--git-dir="+s.Git.BareDir(s.Name), "for-each-ref", "refs/deliver/queue/").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != "" {
		t.Errorf("changes left in the queue:\n%s", out)
	}
	switch {
	case victim < 0:
		t.Logf("no run landed another run's change in this trial")
	case !died:
		t.Logf("the run landing other runs' changes had finished when it was to be killed")
	}
	return died
}

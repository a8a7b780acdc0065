package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
)

// Sizes are the knobs of a benchmark run; DefaultSizes are the issue's, SmokeSizes a
// seconds-long run that only checks correctness.
type Sizes struct {
	P1Services, P1Runs    int
	P2N                   []int
	P2Trials, P2Services  int
	P2HandWrittenN        int // also run the baseline at this N on a hand-written overlay (0: skip)
	P3Commits, P3Services int
	P3SmallCommits        int
	P3Runs                int
	P4Objects, P4Runs     int
	P5Runs                int
	StressN, StressTrials int
	RoundRuns             int
	P6Services, P6Runs    int
}

// DefaultSizes are the sizes of issue 7.
var DefaultSizes = Sizes{
	P1Services: 20, P1Runs: 9,
	P2N: []int{1, 8, 32, 64}, P2Trials: 3, P2Services: 32, P2HandWrittenN: 8,
	P3Commits: 10000, P3Services: 500, P3SmallCommits: 10, P3Runs: 5,
	P4Objects: 1000, P4Runs: 3,
	P5Runs:  50,
	StressN: 32, StressTrials: 20,
	RoundRuns:  10,
	P6Services: 20, P6Runs: 7,
}

// SmokeSizes keep every code path alive in a few seconds.
var SmokeSizes = Sizes{
	P1Services: 3, P1Runs: 1,
	P2N: []int{1, 4}, P2Trials: 1, P2Services: 4,
	P3Commits: 200, P3Services: 10, P3SmallCommits: 10, P3Runs: 1,
	P4Objects: 40, P4Runs: 1,
	P5Runs:  3,
	StressN: 4, StressTrials: 1,
	RoundRuns:  2,
	P6Services: 2, P6Runs: 1,
}

// images pushes a new random image for each tag of repo once and remembers its digest.
type images struct {
	e  *Env
	mu sync.Mutex
	d  map[string]string // repo:tag -> digest
}

func (im *images) push(repo, tag string) (Deploy, string, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.d == nil {
		im.d = map[string]string{}
	}
	key := repo + ":" + tag
	if d, ok := im.d[key]; ok {
		return Deploy{Ref: im.e.Reg.Ref(repo, tag)}, d, nil
	}
	d, err := im.e.Reg.PushRandomImage(repo, tag)
	if err != nil {
		return Deploy{}, "", err
	}
	im.d[key] = d
	return Deploy{Ref: im.e.Reg.Ref(repo, tag)}, d, nil
}

// deployOf returns the Deploy of service svc at tag, pushing the image if needed.
func (e *Env) deployOf(im *images, f Fixture, svc, tag string) (Deploy, string, error) {
	d, digest, err := im.push(f.ImageRepo(svc), tag)
	d.Name = svc
	return d, digest, err
}

// ---- P1: single deploy -------------------------------------------------------------------

// P1Result holds the measured runs of both tools.
type P1Result struct {
	Services, Objects int
	Deliver, Script   []Run
	// EditInProc and BuildInProc split deliver's push phase: kustomize.SetImages and
	// kustomize.Build on the same overlay, timed in this process.
	EditInProc, BuildInProc time.Duration
}

// P1 deploys one image at a time into a 20-service overlay, applying and waiting, with
// deliver and with the baseline script, each against its own config repo and namespace.
func P1(ctx context.Context, e *Env, im *images, s Sizes) (*P1Result, error) {
	mk := func(name string) Fixture {
		return Fixture{Services: services(s.P1Services), Env: name, NS: name, Registry: e.Reg.Host, Tag: "1.0.0"}
	}
	fd, fs := mk("p1-deliver"), mk("p1-script")
	td, err := e.createRepo("p1-deliver", fd)
	if err != nil {
		return nil, err
	}
	ts, err := e.createRepo("p1-script", fs)
	if err != nil {
		return nil, err
	}
	td.Apply, ts.Apply = true, true
	res := &P1Result{Services: s.P1Services, Objects: fd.Objects()}
	// Run 0 creates the namespace and every Deployment and is not counted.
	for i := 0; i <= s.P1Runs; i++ {
		svc := fd.Services[i%len(fd.Services)]
		d, digest, err := e.deployOf(im, fd, svc, fmt.Sprintf("1.%d.0", i+1))
		if err != nil {
			return nil, err
		}
		var rd, rs Run
		runD := func() error {
			rd, err = e.deliver(ctx, nil, td, d)
			if err == nil && !rd.OK() {
				err = fmt.Errorf("P1 deliver run %d failed:\n%s", i, rd)
			}
			if err == nil {
				err = e.checkLanded(td, d, digest)
			}
			return err
		}
		runS := func() error {
			rs, err = e.script(ctx, nil, ts, d, "deployment/"+svc)
			if err == nil && !rs.OK() {
				err = fmt.Errorf("P1 script run %d failed:\n%s", i, rs)
			}
			return err
		}
		first, second := runD, runS
		if i%2 == 0 {
			first, second = runS, runD
		}
		if err := first(); err != nil {
			return nil, err
		}
		if err := second(); err != nil {
			return nil, err
		}
		if i == 0 {
			e.Log("P1 warm-up: deliver %s %s, script %s %s", ms(rd.Wall), fmtPhases(rd.Phases), ms(rs.Wall), fmtPhases(rs.Phases))
			continue
		}
		res.Deliver = append(res.Deliver, rd)
		res.Script = append(res.Script, rs)
		e.Log("P1 run %d/%d: deliver %s %s, script %s %s", i, s.P1Runs, ms(rd.Wall), fmtPhases(rd.Phases), ms(rs.Wall), fmtPhases(rs.Phases))
	}
	res.EditInProc, res.BuildInProc, err = e.inProcEditBuild(fd, 9)
	return res, err
}

// checkLanded checks that the overlay pins d (with digest, if given).
func (e *Env) checkLanded(t Target, d Deploy, digest string) error {
	imgs, err := e.overlayImages(t)
	if err != nil {
		return err
	}
	ok, got := landed(imgs, d, digest)
	if !ok {
		return fmt.Errorf("%s: the overlay of %s holds %s, want %s", d.Name, t.Repo, got, d.Ref)
	}
	return nil
}

// landed reports whether imgs pin d (and digest, unless it is ""), and what they hold.
func landed(imgs map[string]types.Image, d Deploy, digest string) (bool, string) {
	img, ok := imgs[d.Name]
	if !ok {
		return false, "nothing"
	}
	got := kustomize.FormatImage(img)
	tag := d.Ref[strings.LastIndex(d.Ref, ":")+1:]
	return img.NewTag == tag && (digest == "" || img.Digest == digest), got
}

// inProcEditBuild times deliver's edit (kustomize.SetImages) and render check
// (kustomize.Build) of the fixture's overlay in this process: the median of n runs each.
func (e *Env) inProcEditBuild(f Fixture, n int) (edit, build time.Duration, err error) {
	root, err := e.tempDir("inproc")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(root)
	for p, content := range f.Files() {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return 0, 0, err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return 0, 0, err
		}
	}
	overlay := "overlays/" + f.Env
	var edits, builds []time.Duration
	for i := 0; i < n; i++ {
		img := types.Image{Name: f.Services[0], NewName: e.Reg.Host + "/" + f.ImageRepo(f.Services[0]), NewTag: fmt.Sprintf("9.%d.0", i),
			Digest: "sha256:" + strings.Repeat(fmt.Sprintf("%x", i%16), 64)}
		t0 := time.Now()
		if _, err := kustomize.SetImages(filepath.Join(root, filepath.FromSlash(overlay)), []types.Image{img}); err != nil {
			return 0, 0, err
		}
		edits = append(edits, time.Since(t0))
		t0 = time.Now()
		if _, err := kustomize.Build(root, overlay); err != nil {
			return 0, 0, err
		}
		builds = append(builds, time.Since(t0))
	}
	return median(edits), median(builds), nil
}

// ---- P2: contention ----------------------------------------------------------------------

// P2Row is one tool at one N, over all trials.
type P2Row struct {
	Tool        string
	N, Trials   int
	HandWritten bool
	Landed      int // updates in the final overlays, summed over trials
	Failed      int // runs that exited non-zero
	Lost        int // runs that exited 0 but whose update is not in the final overlay
	Retries     int // lost push attempts, summed
	// Pushes counts the pushes that moved the branch, summed (with group commit, one push
	// lands several changes).
	Pushes int
	Walls  []time.Duration
	// ClientCPU is the CPU time of the N deploy processes, ServerCPU that of the git server's
	// `git http-backend` processes, per trial (medians).
	ClientCPU, ServerCPU []time.Duration
}

// P2Result holds the rows and the serial limit's unit.
type P2Result struct {
	Round       time.Duration // one fetch+commit+push round with the git CLI, alone
	DeliverOne  time.Duration // one deliver --no-apply run alone (the N=1 median)
	Rows        []P2Row
	RoundSample int
}

// P2 runs N pipelines at once, each deploying a distinct service into one environment of
// one config repo (--no-apply), for deliver and for the baseline script.
func P2(ctx context.Context, e *Env, im *images, s Sizes) (*P2Result, error) {
	f := Fixture{Services: services(s.P2Services), Env: "p2", NS: "p2", Registry: e.Reg.Host, Tag: "1.0.0", Canonical: true}
	res := &P2Result{}
	// The round is measured before each N, and the median of all rounds is the unit, so a
	// busy moment on a shared machine does not skew it.
	var rounds []time.Duration
	for _, n := range s.P2N {
		rs, err := e.serialRounds(ctx, f, s.RoundRuns)
		if err != nil {
			return nil, err
		}
		rounds = append(rounds, rs...)
		e.Log("P2 one fetch+commit+push round alone (git CLI), before N=%d: %s", n, ms(median(rs)))
		for _, tool := range []string{"deliver", "script"} {
			row, err := e.contention(ctx, im, f, tool, n, s.P2Trials, false)
			if err != nil {
				return nil, err
			}
			res.Rows = append(res.Rows, row)
			if tool == "deliver" && n == 1 {
				res.DeliverOne = median(row.Walls)
			}
		}
	}
	res.Round, res.RoundSample = median(rounds), len(rounds)
	if s.P2HandWrittenN > 0 {
		hw := f
		hw.Canonical = false
		row, err := e.contention(ctx, im, hw, "script", s.P2HandWrittenN, s.P2Trials, true)
		if err != nil {
			return nil, err
		}
		res.Rows = append(res.Rows, row)
	}
	return res, nil
}

// contention runs trials of n concurrent deploys by tool, each on a fresh repo.
func (e *Env) contention(ctx context.Context, im *images, f Fixture, tool string, n, trials int, handWritten bool) (P2Row, error) {
	row := P2Row{Tool: tool, N: n, Trials: trials, HandWritten: handWritten}
	for trial := 1; trial <= trials; trial++ {
		tr, err := e.contentionTrial(ctx, im, f, tool, n)
		if err != nil {
			return row, err
		}
		row.Landed += tr.landed
		row.Failed += tr.failed
		row.Lost += tr.lost
		row.Retries += tr.retries
		row.Pushes += tr.pushes
		row.Walls = append(row.Walls, tr.wall)
		row.ClientCPU = append(row.ClientCPU, tr.clientCPU)
		row.ServerCPU = append(row.ServerCPU, tr.serverCPU)
		e.Log("P2 %s N=%d trial %d: %d landed, %d failed, %d lost, %d lost races, %d pushes moved the branch, wall %s, CPU: clients %s, git server %s",
			tool, n, trial, tr.landed, tr.failed, tr.lost, tr.retries, tr.pushes, ms(tr.wall), ms(tr.clientCPU), ms(tr.serverCPU))
	}
	return row, nil
}

type trialResult struct {
	target                        Target
	runs                          []Run
	landed, failed, lost, retries int
	pushes                        int // pushes that moved the branch
	wall, clientCPU, serverCPU    time.Duration
	deploys                       []Deploy
	digests                       []string
	failures                      []string
}

var repoSeq struct {
	sync.Mutex
	n int
}

func nextRepo(prefix string) string {
	repoSeq.Lock()
	defer repoSeq.Unlock()
	repoSeq.n++
	return fmt.Sprintf("%s-%d", prefix, repoSeq.n)
}

// contentionTrial starts n deploys at the same moment on a fresh repo and checks the final
// overlay.
func (e *Env) contentionTrial(ctx context.Context, im *images, f Fixture, tool string, n int) (trialResult, error) {
	if n > len(f.Services) {
		f.Services = services(n)
	}
	t, err := e.createRepo(nextRepo("p2-"+tool), f)
	if err != nil {
		return trialResult{}, err
	}
	tr := trialResult{target: t, runs: make([]Run, n)}
	for i := 0; i < n; i++ {
		d, digest, err := e.deployOf(im, f, f.Services[i], "2.0.0")
		if err != nil {
			return tr, err
		}
		tr.deploys = append(tr.deploys, d)
		tr.digests = append(tr.digests, digest)
	}
	g := make(gate)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tool == "deliver" {
				tr.runs[i], errs[i] = e.deliver(ctx, g, t, tr.deploys[i])
			} else {
				tr.runs[i], errs[i] = e.script(ctx, g, t, tr.deploys[i], "")
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let every goroutine reach the gate
	cpu0 := childrenCPU()
	start := time.Now()
	close(g)
	wg.Wait()
	tr.wall = time.Since(start)
	children := childrenCPU() - cpu0
	for _, err := range errs {
		if err != nil {
			return tr, err
		}
	}
	imgs, err := e.overlayImages(t)
	if err != nil {
		return tr, err
	}
	for i, r := range tr.runs {
		digest := ""
		if tool == "deliver" {
			digest = tr.digests[i]
		}
		ok, got := landed(imgs, tr.deploys[i], digest)
		switch {
		case ok:
			tr.landed++
		case r.OK():
			tr.lost++
			tr.failures = append(tr.failures, fmt.Sprintf("%s: exited 0 but the overlay holds %s (update lost)", tr.deploys[i].Name, got))
		}
		if !r.OK() {
			tr.failed++
			tr.failures = append(tr.failures, fmt.Sprintf("%s: exit %d: %s", tr.deploys[i].Name, r.Code, lastLine(r.Stderr)))
		}
		tr.retries += r.LostRaces()
		tr.clientCPU += r.CPU
	}
	tr.serverCPU = children - tr.clientCPU // the git server's http-backend (the rss helpers' own share is small)
	if tr.pushes, err = e.branchPushes(t); err != nil {
		return tr, err
	}
	return tr, nil
}

// branchPushes counts the pushes that moved the main branch of t's repo, from its reflog
// (createRepo turns it on for every update).
func (e *Env) branchPushes(t Target) (int, error) {
	data, err := os.ReadFile(filepath.Join(e.Git.BareDir(t.Repo), "logs", "refs", "heads", "main"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the reflog of %s: %w", t.Repo, err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		// Each line is one update, old and new value first; the branch's creation (the seed
		// commit) has no old value and is not a push.
		if line != "" && !strings.HasPrefix(line, strings.Repeat("0", 40)+" ") {
			n++
		}
	}
	return n, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// serialRounds measures n fetch + commit + push rounds with the git CLI from a warm clone,
// alone: N such rounds are the least time N updates of one branch can take.
func (e *Env) serialRounds(ctx context.Context, f Fixture, n int) ([]time.Duration, error) {
	t, err := e.createRepo(nextRepo("p2-round"), f)
	if err != nil {
		return nil, err
	}
	work, err := e.tempDir("round")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	authURL := strings.Replace(t.URL, "http://", "http://"+e.Git.Username+":"+e.Git.Password+"@", 1)
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = work
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + work, "GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
			"GIT_AUTHOR_NAME=ci", "GIT_AUTHOR_EMAIL=ci@example.invalid", "GIT_COMMITTER_NAME=ci", "GIT_COMMITTER_EMAIL=ci@example.invalid"}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := git("clone", "--quiet", "--branch", "main", authURL, "."); err != nil {
		return nil, err
	}
	file := filepath.Join(work, "overlays", f.Env, "kustomization.yaml")
	var rounds []time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if err := git("fetch", "--quiet", "origin", "main"); err != nil {
			return nil, err
		}
		if err := git("reset", "--quiet", "--hard", "origin/main"); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		data = []byte(setTag(string(data), f.Services[i%len(f.Services)], fmt.Sprintf("3.%d.0", i)))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return nil, err
		}
		if err := git("commit", "--quiet", "--all", "--message", fmt.Sprintf("round %d", i)); err != nil {
			return nil, err
		}
		if err := git("push", "--quiet", "origin", "HEAD:main"); err != nil {
			return nil, err
		}
		rounds = append(rounds, time.Since(t0))
	}
	return rounds, nil
}

// ---- Stress: contention at 32 × 20 trials, with every check --------------------------------

// StressResult sums the trials.
type StressResult struct {
	N, Trials       int
	Deploys, Landed int
	Failed, Lost    int
	Retries         int
	MaxAttempts     int
	NonLinear       int // trials whose history was not linear or had extra/missing commits
	NotRendering    int // commits that did not render
	CommitsChecked  int
	Walls           []time.Duration
	Problems        []string
}

// Stress runs the contention test for deliver trials times and checks, each time, that no
// update was lost, that the history is linear (seed + one commit per deploy, no merges) and
// that every commit renders.
func Stress(ctx context.Context, e *Env, im *images, n, trials int) (*StressResult, error) {
	f := Fixture{Services: services(max(n, 1)), Env: "stress", NS: "stress", Registry: e.Reg.Host, Tag: "1.0.0"}
	res := &StressResult{N: n, Trials: trials}
	for trial := 1; trial <= trials; trial++ {
		tr, err := e.contentionTrial(ctx, im, f, "deliver", n)
		if err != nil {
			return nil, err
		}
		res.Deploys += n
		res.Landed += tr.landed
		res.Failed += tr.failed
		res.Lost += tr.lost
		res.Retries += tr.retries
		res.Walls = append(res.Walls, tr.wall)
		res.Problems = append(res.Problems, tr.failures...)
		for _, r := range tr.runs {
			if a := r.LostRaces() + 1; a > res.MaxAttempts {
				res.MaxAttempts = a
			}
		}
		log, err := e.Git.Log(tr.target.Repo, "main")
		if err != nil {
			return nil, err
		}
		linear := len(log) == n+1
		for _, c := range log {
			if c.NumParents() > 1 {
				linear = false
			}
		}
		if !linear {
			res.NonLinear++
			res.Problems = append(res.Problems, fmt.Sprintf("trial %d: %d commits (want %d) or a merge commit", trial, len(log), n+1))
		}
		for _, c := range log {
			res.CommitsChecked++
			if err := e.renders(tr.target, c.Hash.String()); err != nil {
				res.NotRendering++
				res.Problems = append(res.Problems, fmt.Sprintf("trial %d: %v", trial, err))
			}
		}
		e.Log("stress trial %d/%d: %d/%d landed, %d lost, %d lost races, %d commits, linear %t, wall %s",
			trial, trials, tr.landed, n, tr.lost, tr.retries, len(log), linear, ms(tr.wall))
	}
	return res, nil
}

// renders exports commit from the bare repo and builds its overlay.
func (e *Env) renders(t Target, commit string) error {
	dir, err := e.tempDir("render")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("sh", "-c", `git --git-dir="$1" archive "$2" | tar -x -C "$3"`, "sh", e.Git.BareDir(t.Repo), commit, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("exporting %s: %w\n%s", commit, err, out)
	}
	if _, err := kustomize.Build(dir, "overlays/"+t.Env); err != nil {
		return fmt.Errorf("commit %s does not render: %w", commit[:12], err)
	}
	return nil
}

// fmtPhases lists phase durations in the order they run.
func fmtPhases(p map[string]time.Duration) string {
	var parts []string
	for _, k := range []string{"verify", "clone", "edit", "commit", "push", "apply", "wait", "reconcile"} {
		if d, ok := p[k]; ok {
			parts = append(parts, k+" "+ms(d))
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

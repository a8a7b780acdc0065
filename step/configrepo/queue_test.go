package configrepo_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/signtest"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/signing"
)

// The tests' changes append a line to list.txt; the line travels in the request trailer
// Test-Line, which lineReplay reads back. Another run's Replay refuses a line starting with
// "refuse-" (exit 8; as when a lock landed since its owner checked), and leaves one starting
// with "leave-" for its owner.

func lineChange(line string) configrepo.Change {
	return configrepo.Change{Edit: appendAlways("list.txt", line), Request: "Test-Line: " + line}
}

// appendAlways appends line to file even when it is there: an edit that is not idempotent, so
// that a change landed twice shows twice.
func appendAlways(file, line string) configrepo.Edit {
	return func(_ context.Context, dir string) (string, []string, error) {
		p := filepath.Join(dir, file)
		old, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			return "", nil, err
		}
		if err := os.WriteFile(p, append(old, []byte(line+"\n")...), 0o644); err != nil {
			return "", nil, err
		}
		return "add " + line, []string{file}, nil
	}
}

func lineReplay(ctx context.Context, dir string, q configrepo.Queued) (string, []string, error) {
	line := ""
	for _, l := range strings.Split(q.Message, "\n") {
		if v, ok := strings.CutPrefix(l, "Test-Line: "); ok {
			line = v
		}
	}
	switch {
	case line == "":
		return "", nil, errors.New("no Test-Line")
	case strings.HasPrefix(line, "refuse-"):
		// Written first, as an edit whose check fails after it wrote would: the landing must
		// undo it.
		if _, paths, err := appendAlways("list.txt", line)(ctx, dir); err != nil {
			return "", paths, err
		}
		return "", []string{"list.txt"}, &configrepo.Refusal{Code: 8, Message: "refused: " + line}
	case strings.HasPrefix(line, "leave-"):
		return "", nil, errors.New("cannot judge " + line)
	}
	return appendAlways("list.txt", line)(ctx, dir)
}

func queueOpts(gs *testenv.GitServer, url string) configrepo.Options {
	o := opts(gs, url)
	o.Replay = lineReplay
	o.QueueSkew = time.Second
	return o
}

// countPushes installs a post-receive hook that appends every update of refs/heads/main to a
// file, and returns a function reading how many there were.
func countPushes(t *testing.T, gs *testenv.GitServer, name string) func() int {
	t.Helper()
	file := filepath.Join(t.TempDir(), "pushes")
	hook := fmt.Sprintf("#!/bin/sh\nwhile read old new ref; do [ \"$ref\" = refs/heads/main ] && echo \"$new\" >> %q; done; exit 0\n", file)
	if err := gs.SetHook(name, "post-receive", hook); err != nil {
		t.Fatal(err)
	}
	return func() int {
		data, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(data), "\n")
	}
}

// changeIDs returns the Deliver-Change-Id of every commit on main (newest first) and fails
// on a merge commit.
func changeIDs(t *testing.T, gs *testenv.GitServer, name string) []string {
	t.Helper()
	log, err := gs.Log(name, "main")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range log {
		if c.NumParents() > 1 {
			t.Errorf("merge commit %s in a history that must be linear", c.Hash)
		}
		for _, l := range strings.Split(c.Message, "\n") {
			if v, ok := strings.CutPrefix(l, "Deliver-Change-Id: "); ok {
				ids = append(ids, v)
			}
		}
	}
	return ids
}

// serverRefs lists the refs of repository name under prefix.
func serverRefs(t *testing.T, gs *testenv.GitServer, name, prefix string) map[string]string {
	t.Helper()
	out := gitCmd(t, gs.BareDir(name), "for-each-ref", "--format=%(refname) %(objectname)", prefix)
	refs := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			refs[k] = v
		}
	}
	return refs
}

// TestGroupCommitLandsEveryChangeOnce: 16 clones update one branch at once through the queue:
// every line lands exactly once (one commit per change, each with its own id), the history is
// linear, the queue is empty afterwards, and the branch moved fewer times than there were
// changes (the landings carried several).
func TestGroupCommitLandsEveryChangeOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "group")
	pushes := countPushes(t, gs, "group")
	const n = 16
	results := make([]configrepo.Result, n)
	errs := make([]error, n)
	var logs [n][]string
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := queueOpts(gs, url)
			var mu sync.Mutex
			o.Logf = func(f string, a ...any) { mu.Lock(); logs[i] = append(logs[i], fmt.Sprintf(f, a...)); mu.Unlock() }
			repo, err := configrepo.Clone(ctx, o)
			if err != nil {
				errs[i] = err
				return
			}
			defer repo.Close()
			<-start
			results[i], errs[i] = repo.UpdateChange(ctx, author, lineChange(fmt.Sprintf("svc-%02d", i)))
		}()
	}
	time.Sleep(200 * time.Millisecond)
	close(start)
	wg.Wait()
	landedByOther, queued := 0, 0
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Errorf("change %d: %v\nlog:\n%s", i, errs[i], strings.Join(logs[i], "\n"))
			continue
		}
		if !results[i].Changed {
			t.Errorf("change %d: not changed", i)
		}
		if results[i].Queued {
			queued++
		}
		if results[i].LandedBy != "" {
			landedByOther++
		}
	}
	got, err := gs.ReadFile("group", "main", "list.txt")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if c := strings.Count(string(got), fmt.Sprintf("svc-%02d\n", i)); c != 1 {
			t.Errorf("svc-%02d is in list.txt %d times, want once", i, c)
		}
	}
	ids := changeIDs(t, gs, "group")
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("change id %s is on the branch twice", id)
		}
		seen[id] = true
	}
	if len(ids) != n {
		t.Errorf("%d change ids on the branch, want %d", len(ids), n)
	}
	if q := serverRefs(t, gs, "group", "refs/deliver/queue/"); len(q) != 0 {
		t.Errorf("queue refs left: %v", q)
	}
	p := pushes()
	t.Logf("%d changes: %d pushes moved the branch; %d went through the queue, %d were landed by another run", n, p, queued, landedByOther)
	if p >= n {
		t.Errorf("%d pushes moved the branch for %d changes: the queue landed none together", p, n)
	}
	for i := 0; i < n; i++ {
		if results[i].Commit == "" {
			continue
		}
		// Every run's commit is the one carrying its line, whoever landed it.
		msg := gitCmd(t, gs.BareDir("group"), "log", "-1", "--format=%B", results[i].Commit)
		if !strings.HasPrefix(msg, fmt.Sprintf("add svc-%02d\n", i)) {
			t.Errorf("change %d: its result commit %s is %q", i, results[i].Commit, msg)
		}
	}
}

// craftQueued puts a change on the queue as another run would have, without that run: a commit
// on the tip with the queue's trailers, on refs/deliver/queue/main/<id>. arrival orders it in the
// queue; deadline is when it expires.
func craftQueued(t *testing.T, gs *testenv.GitServer, name, line string, arrival, deadline time.Time) (id, ref string) {
	t.Helper()
	id = fmt.Sprintf("%019d-%010d-%08x", arrival.UnixNano(), deadline.Unix(), arrival.UnixNano()&0xffffffff)
	ref = "refs/deliver/queue/main/" + id
	work := t.TempDir()
	gitCmd(t, work, "clone", "-q", authURL(gs, gs.RepoURL(name)), ".")
	msg := fmt.Sprintf("add %s\n\nTest-Line: %s\nDeliver-Change-Id: %s\nDeliver-Deadline: %s\nDeliver-Queue: 1\n", line, line, id, deadline.UTC().Format(time.RFC3339))
	gitCmd(t, work, "-c", "user.name=crafted", "-c", "user.email=crafted@t", "commit", "-q", "--allow-empty", "-m", msg)
	gitCmd(t, work, "push", "-q", "origin", "HEAD:"+ref)
	return id, ref
}

// moveBranch pushes a commit to main with the git CLI, as another pipeline would.
func moveBranch(t *testing.T, gs *testenv.GitServer, name, file string) {
	t.Helper()
	work := t.TempDir()
	gitCmd(t, work, "clone", "-q", authURL(gs, gs.RepoURL(name)), ".")
	if err := os.WriteFile(filepath.Join(work, file), []byte(file+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitCmd(t, work, "add", file)
	gitCmd(t, work, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "another pipeline")
	gitCmd(t, work, "push", "-q", "origin", "HEAD:main")
}

// TestQueuedChangeRefusedByAnotherRun: a run waits in the queue behind a change whose run is
// gone; a second run takes over, lands that change and its own, and refuses the first run's
// change (its Replay says exit 8, after writing to the file): the first run gets the refusal,
// with its code and message, and its line is nowhere (the refused edit was undone before the
// next change).
func TestQueuedChangeRefusedByAnotherRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "refuse")
	now := time.Now()
	orphanID, _ := craftQueued(t, gs, "refuse", "orphan", now.Add(-time.Second), now.Add(time.Minute))

	// A waits behind the orphan and never takes over.
	oa := queueOpts(gs, url)
	oa.QueueTakeover = time.Hour
	a, err := configrepo.Clone(ctx, oa)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var aRes configrepo.Result
	var aErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		aRes, aErr = a.UpdateChange(ctx, author, lineChange("refuse-a"))
	}()
	// B comes once A is queued, and takes over after a second.
	waitForRefs(t, gs, "refuse", "refs/deliver/queue/", 2)
	ob := queueOpts(gs, url)
	ob.QueueTakeover = time.Second
	b, err := configrepo.Clone(ctx, ob)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bRes, err := b.UpdateChange(ctx, author, lineChange("b"))
	if err != nil {
		t.Fatalf("B: %v", err)
	}
	<-done
	var refusal *configrepo.Refusal
	if !errors.As(aErr, &refusal) || refusal.Code != 8 || refusal.Message != "refused: refuse-a" {
		t.Fatalf("A: %+v, %v; want the refusal with exit 8 and B's message", aRes, aErr)
	}
	if !bRes.Queued || bRes.Landed != 2 {
		t.Errorf("B: %+v; want it to land the queue: the orphan and its own change", bRes)
	}
	got, _ := gs.ReadFile("refuse", "main", "list.txt")
	if string(got) != "orphan\nb\n" {
		t.Errorf("list.txt = %q, want the orphan's line then B's (A's refused edit undone)", got)
	}
	if ids := changeIDs(t, gs, "refuse"); len(ids) != 2 || ids[1] != orphanID {
		t.Errorf("change ids on the branch: %v, want B's after the orphan %s", ids, orphanID)
	}
	if q := serverRefs(t, gs, "refuse", "refs/deliver/queue/"); len(q) != 0 {
		t.Errorf("queue refs left: %v", q)
	}
}

// waitForRefs waits until repository name has n refs under prefix.
func waitForRefs(t *testing.T, gs *testenv.GitServer, name, prefix string, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if len(serverRefs(t, gs, name, prefix)) >= n {
			return
		}
	}
	t.Fatalf("fewer than %d refs under %s after 30s: %v", n, prefix, serverRefs(t, gs, name, prefix))
}

// TestExpiredQueuedChangeIsNeverLanded: a queued change whose deadline passed (less the skew)
// is dropped by the next landing: its queue ref is deleted, its outcome says expired, and its
// line is not on the branch.
func TestExpiredQueuedChangeIsNeverLanded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "expired")
	now := time.Now()
	// Expired by the skew alone: its deadline is half a second away, the skew a second.
	id, ref := craftQueued(t, gs, "expired", "too-late", now.Add(-time.Second), now.Add(500*time.Millisecond))
	o := queueOpts(gs, url)
	repo, err := configrepo.Clone(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Close()
	moveBranch(t, gs, "expired", "other.txt") // so that the run's first push loses and it queues
	res, err := repo.UpdateChange(ctx, author, lineChange("on-time"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Queued {
		t.Errorf("the change did not go through the queue: %+v", res)
	}
	got, _ := gs.ReadFile("expired", "main", "list.txt")
	if string(got) != "on-time\n" {
		t.Errorf("list.txt = %q: the expired change landed", got)
	}
	for _, cid := range changeIDs(t, gs, "expired") {
		if cid == id {
			t.Errorf("the expired change %s is on the branch", id)
		}
	}
	if q := serverRefs(t, gs, "expired", "refs/deliver/queue/"); len(q) != 0 {
		t.Errorf("queue refs left: %v (%s should be gone)", q, ref)
	}
	out := serverRefs(t, gs, "expired", "refs/deliver/outcome/main/"+id)
	if len(out) != 1 {
		t.Fatalf("no outcome for the expired change: %v", out)
	}
	for _, h := range out {
		msg := gitCmd(t, gs.BareDir("expired"), "log", "-1", "--format=%B", h)
		if !strings.Contains(msg, "Deliver-Outcome: expired") {
			t.Errorf("outcome of the expired change:\n%s", msg)
		}
	}
}

// TestWithdrawnOnInterruptAndDeadline: a run waiting in the queue (behind a change nobody
// lands) withdraws its change when interrupted and when its deadline comes: its queue ref is
// gone, nothing landed, and the error says why (interrupted: context.Canceled).
func TestWithdrawnOnInterruptAndDeadline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(repo *configrepo.Repo) (configrepo.Result, error)
		want error
	}{
		{"interrupt", func(repo *configrepo.Repo) (configrepo.Result, error) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(1500*time.Millisecond, cancel)
			return repo.UpdateChange(ctx, author, lineChange("interrupted"))
		}, context.Canceled},
		{"deadline", func(repo *configrepo.Repo) (configrepo.Result, error) {
			return repo.UpdateChange(context.Background(), author, lineChange("late"))
		}, configrepo.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gs := testenv.NewGitServer(t)
			url := newRepo(t, gs, "withdraw")
			now := time.Now()
			craftQueued(t, gs, "withdraw", "leave-me", now.Add(-time.Second), now.Add(time.Hour))
			before, _ := gs.Head("withdraw", "main")
			o := queueOpts(gs, url)
			o.QueueTakeover = time.Hour
			o.Timeout = 4 * time.Second
			repo, err := configrepo.Clone(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			defer repo.Close()
			_, err = tc.run(repo)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if q := serverRefs(t, gs, "withdraw", "refs/deliver/queue/"); len(q) != 1 {
				t.Errorf("queue refs: %v; want only the crafted one (this run's withdrawn)", q)
			}
			if after, _ := gs.Head("withdraw", "main"); after != before {
				t.Errorf("branch moved from %s to %s", before, after)
			}
		})
	}
}

// TestQueueNamespaceRefused: a server whose hook refuses refs outside refs/heads makes every
// run fall back to retrying (said once in its log), and every change still lands once.
func TestQueueNamespaceRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "refs-refused")
	hook := "#!/bin/sh\nwhile read old new ref; do case \"$ref\" in refs/heads/*) ;; *) echo \"refusing $ref: only branches\" >&2; exit 1;; esac; done\nexit 0\n"
	if err := gs.SetHook("refs-refused", "pre-receive", hook); err != nil {
		t.Fatal(err)
	}
	const n = 6
	errs := make([]error, n)
	logs := make([][]string, n)
	repos := make([]*configrepo.Repo, n)
	for i := range repos {
		o := queueOpts(gs, url)
		var mu sync.Mutex
		o.Logf = func(f string, a ...any) { mu.Lock(); logs[i] = append(logs[i], fmt.Sprintf(f, a...)); mu.Unlock() }
		repo, err := configrepo.Clone(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		defer repo.Close()
		repos[i] = repo
	}
	// Every run's first push finds the branch moved, so each tries the queue.
	moveBranch(t, gs, "refs-refused", "other.txt")
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = repos[i].UpdateChange(ctx, author, lineChange(fmt.Sprintf("line-%d", i)))
		}()
	}
	wg.Wait()
	fellBack := 0
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Errorf("change %d: %v", i, errs[i])
		}
		l := strings.Join(logs[i], "\n")
		if c := strings.Count(l, "falling back"); c > 1 {
			t.Errorf("change %d said it fell back %d times:\n%s", i, c, l)
		} else if c == 1 {
			fellBack++
			if !strings.Contains(l, "only branches") {
				t.Errorf("change %d: the fallback does not quote the server:\n%s", i, l)
			}
		}
	}
	if fellBack != n {
		t.Errorf("%d of %d runs said they fell back", fellBack, n)
	}
	got, _ := gs.ReadFile("refs-refused", "main", "list.txt")
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	sort.Strings(lines)
	if len(lines) != n {
		t.Errorf("list.txt = %q, want %d lines", got, n)
	}
	if q := serverRefs(t, gs, "refs-refused", "refs/deliver/"); len(q) != 0 {
		t.Errorf("refs under refs/deliver/: %v", q)
	}
	if ids := changeIDs(t, gs, "refs-refused"); len(ids) != n {
		t.Errorf("%d change ids on the branch, want %d", len(ids), n)
	}
}

// TestLandedCommitsAreSigned: a run with a signing key that lands other runs' changes signs
// every commit it lands, as committer (the name Options give), each keeping its own author; the
// real git CLI verifies each signature.
func TestLandedCommitsAreSigned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	k := signtest.SSH(t, "ed25519", "", "bot@example.com")
	key, err := signing.Parse([]byte(k.Private), nil)
	if err != nil {
		t.Fatal(err)
	}
	gs := testenv.NewGitServer(t)
	url := newRepo(t, gs, "signed-queue")
	now := time.Now()
	craftQueued(t, gs, "signed-queue", "orphan", now.Add(-time.Second), now.Add(time.Minute))

	// A waits behind the orphan and never takes over; B, signing, takes over.
	oa := queueOpts(gs, url)
	oa.QueueTakeover = time.Hour
	a, err := configrepo.Clone(ctx, oa)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ada := author
	ada.Name, ada.Email = "Ada", "ada@example.com"
	var aRes configrepo.Result
	var aErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		aRes, aErr = a.UpdateChange(ctx, ada, lineChange("a"))
	}()
	waitForRefs(t, gs, "signed-queue", "refs/deliver/queue/", 2)
	ob := queueOpts(gs, url)
	ob.QueueTakeover = time.Second
	ob.Signer, ob.CommitterName, ob.CommitterEmail = key, "Deliver Bot", "bot@example.com"
	b, err := configrepo.Clone(ctx, ob)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	bRes, err := b.UpdateChange(ctx, author, lineChange("b"))
	if err != nil {
		t.Fatalf("B: %v", err)
	}
	<-done
	if aErr != nil || aRes.LandedBy != "Deliver Bot <bot@example.com>" {
		t.Fatalf("A: %+v, %v; want it landed by B, committer Deliver Bot", aRes, aErr)
	}
	log, err := gs.Log("signed-queue", "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 4 || log[0].Hash.String() != bRes.Commit {
		t.Fatalf("%d commits, tip %s; want the orphan's, A's and B's on the seed, B's last", len(log), log[0].Hash)
	}
	for i, wantAuthor := range []string{author.Name, "Ada", "crafted"} {
		c := log[i]
		if c.Author.Name != wantAuthor || c.Committer.Name != "Deliver Bot" {
			t.Errorf("commit %s: author %s, committer %s; want %s and Deliver Bot", c.Hash, c.Author.Name, c.Committer.Name, wantAuthor)
		}
		signtest.RequireVerified(t, gs.BareDir("signed-queue"), c.Hash.String(), k)
	}
}

// TestCheckWaitsForTheLanding: a change's Check runs before a push to the branch, and a
// failing one stops the update with nothing pushed; a change that joins the queue skips it
// there, and the landing runs it (on the tip it lands on). A change whose Check fails when
// it is landed is not landed, its owner gets the error, and the other changes land.
func TestCheckWaitsForTheLanding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gs := testenv.NewGitServer(t)
	// checking returns a Check that records how many queue refs the server holds each time
	// it runs, and fails with fail if set.
	checking := func(name string, queued *[]int, fail error) func(context.Context, string) error {
		return func(context.Context, string) error {
			*queued = append(*queued, len(serverRefs(t, gs, name, "refs/deliver/queue/")))
			return fail
		}
	}
	t.Run("alone", func(t *testing.T) {
		t.Parallel()
		url := newRepo(t, gs, "check-alone")
		for _, fail := range []error{nil, errors.New("does not render")} {
			r, err := configrepo.Clone(ctx, queueOpts(gs, url))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var runs []int
			ch := lineChange(fmt.Sprintf("alone-%v", fail != nil))
			ch.Check = checking("check-alone", &runs, fail)
			res, err := r.UpdateChange(ctx, author, ch)
			if len(runs) != 1 || runs[0] != 0 {
				t.Errorf("fail=%v: Check ran %d time(s) with %v queue refs, want once before the push, none queued", fail, len(runs), runs)
			}
			got, _ := gs.ReadFile("check-alone", "main", "list.txt")
			if fail == nil && (err != nil || !res.Changed || string(got) != "alone-false\n") {
				t.Errorf("passing Check: %+v, %v, list.txt %q; want the line pushed", res, err, got)
			}
			if fail != nil && (!errors.Is(err, fail) || res.Changed || string(got) != "alone-false\n") {
				t.Errorf("failing Check: %+v, %v, list.txt %q; want its error and nothing pushed", res, err, got)
			}
		}
	})
	for _, fail := range []error{nil, errors.New("does not render")} {
		t.Run(fmt.Sprintf("queued, check fails: %v", fail != nil), func(t *testing.T) {
			t.Parallel()
			name := fmt.Sprintf("check-queued-%v", fail != nil)
			url := newRepo(t, gs, name)
			now := time.Now()
			craftQueued(t, gs, name, "orphan", now.Add(-time.Second), now.Add(time.Minute))
			o := queueOpts(gs, url)
			o.QueueTakeover = time.Second
			r, err := configrepo.Clone(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var runs []int
			ch := lineChange("mine")
			ch.Check = checking(name, &runs, fail)
			res, err := r.UpdateChange(ctx, author, ch)
			if len(runs) != 1 || runs[0] != 2 {
				t.Errorf("Check ran %d time(s) with %v queue refs, want once, in the landing (the orphan and this change queued)", len(runs), runs)
			}
			got, _ := gs.ReadFile(name, "main", "list.txt")
			switch {
			case fail == nil && (err != nil || !res.Queued || string(got) != "orphan\nmine\n"):
				t.Errorf("%+v, %v, list.txt %q; want both lines landed", res, err, got)
			case fail != nil && (!errors.Is(err, fail) || string(got) != "orphan\n"):
				t.Errorf("%+v, %v, list.txt %q; want the Check's error, the orphan landed and this line not", res, err, got)
			}
			if q := serverRefs(t, gs, name, "refs/deliver/queue/"); len(q) != 0 {
				t.Errorf("queue refs left: %v", q)
			}
		})
	}
}

package configrepo

// Group commit: deliver runs that push to the same branch at the same time land each other's
// changes together instead of racing for it.
//
// A run's first push is the plain one (Update). When it finds the branch moved since its clone,
// or other changes already waiting, it publishes its change where it cannot conflict: a commit
// on refs/deliver/queue/<branch>/<id>, made on the tip it saw, whose message is the change's
// own (the release record) plus what another run needs to re-apply it (Change.Request) and the
// trailers Deliver-Change-Id, Deliver-Deadline and Deliver-Queue. The id sorts by arrival and
// carries the deadline, so the refs alone tell the queue's order and what has expired.
//
// The run owning the oldest waiting change lands the queue: one fetch of the branch's tip and
// of every queued commit; then, in id order, each change is re-applied on the tip (its own run
// through its Edit, the others through Options.Replay), one commit each, keeping its author and
// message (with its Deliver-Change-Id) and with the lander as committer; then one atomic push
// moves the branch, deletes the queue ref of every change it decided (landed, refused, empty,
// expired), each at the commit it had, and creates refs/deliver/outcome/<branch>/<id> for
// every change of another run: the landed commit itself, or a commit whose message holds the
// refusal (exit code and message) or says that nothing changed or that the deadline passed. All
// of it happens or none of it does, so a change is on the branch once or not at all: a lander
// that loses the branch to another push fetches again and starts over, and a change whose
// queue ref changed (withdrawn, decided by another lander) is not landed by this push.
//
// The other runs poll the refs (an advertisement, no objects) until their change's queue ref is
// gone, then read its outcome. A run whose oldest change does not move for a while
// (Options.QueueTakeover; its owner was killed) lands the queue itself. At its deadline, or when
// interrupted, a run withdraws its change: it deletes its queue ref at the commit it queued,
// which fails if a lander decided it first (then it reads the outcome). A run killed with
// SIGKILL cannot withdraw: its change stays queued and may still land until its deadline, which
// every lander honours, Options.QueueSkew early to allow for clocks that disagree.
//
// A server that does not support atomic pushes, or refuses refs outside refs/heads, makes
// Update fall back to retrying the push on the new tip (said once in the log).

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
)

// Ref namespaces of the queue.
const (
	queuePrefix   = "refs/deliver/queue/"
	outcomePrefix = "refs/deliver/outcome/"
)

// Trailers of queued changes and outcomes.
const (
	trailerChangeID = "Deliver-Change-Id"
	trailerDeadline = "Deliver-Deadline"
	trailerQueue    = "Deliver-Queue"
	trailerOutcome  = "Deliver-Outcome"
	trailerExitCode = "Deliver-Exit-Code"
	// queueVersion is the format of queued changes this deliver writes and re-applies.
	queueVersion = "1"
)

// Outcomes a lander records for another run's change.
const (
	outcomeRefused   = "refused"
	outcomeUnchanged = "unchanged"
	outcomeExpired   = "expired"
)

// DefaultQueueSkew is Options.QueueSkew when it is zero.
const DefaultQueueSkew = 5 * time.Second

// DefaultQueueTakeover is Options.QueueTakeover when it is zero.
const DefaultQueueTakeover = 5 * time.Second

const (
	// minQueueWindow: a run queues its change only when it can wait at least this long.
	minQueueWindow = time.Second
	// outcomeRetention: an outcome ref is deleted (by a later landing) this long after the
	// change's deadline: its owner has stopped waiting by then.
	outcomeRetention = time.Minute
	// takeoverPerChange is added to Options.QueueTakeover for each change waiting.
	takeoverPerChange = 100 * time.Millisecond
	// withdrawTimeout bounds the withdrawal of a change when its run gives up or is
	// interrupted (the run's own context is over by then).
	withdrawTimeout = 10 * time.Second
)

// Change is an update that may go through the queue: Edit as for Update, and Request, the
// trailers (lines "Key: value") a Replay of another run needs to re-apply it. An empty Request
// keeps the change out of the queue: a lost race is retried as Update does.
//
// Check, if set, completes Edit's checks of what it changed (for example rendering it). It runs
// on the edited work tree before the change is pushed to the branch. When the clone saw other
// changes waiting in the queue, it does not run before the change joins them: whoever lands a
// queued change re-applies it (this run through Edit and Check, another through Replay, which
// must make the same checks) and checks it there, on the tip it lands on, so the work is not
// done twice. An error from Check ends the update as an error from Edit does.
type Change struct {
	Edit    Edit
	Check   func(ctx context.Context, dir string) error
	Request string
}

// checked is the change's Edit followed by its Check: the whole of it, as a landing re-applies
// it.
func (c Change) checked() Edit {
	if c.Check == nil {
		return c.Edit
	}
	return func(ctx context.Context, dir string) (string, []string, error) {
		msg, paths, err := c.Edit(ctx, dir)
		if err != nil || len(paths) == 0 {
			return msg, paths, err
		}
		return msg, paths, c.Check(ctx, dir)
	}
}

// Replay re-applies another run's queued change in the work tree at dir, on the tip a landing
// builds on, as that run's Edit would have: it returns the commit message (the change's record
// as it reads on this tip) and the paths it changed (none: nothing to change). A *Refusal
// (possibly wrapped) refuses the change: it is not landed and its owner exits with the
// refusal's code and message. Any other error leaves the change queued for its owner, who may
// judge it (Replay must not guess, for example when it cannot read a registry the owner can).
type Replay func(ctx context.Context, dir string, change Queued) (message string, paths []string, err error)

// Queued is a change waiting in the queue, as Replay sees it.
type Queued struct {
	// ID is the change's id (Deliver-Change-Id).
	ID string
	// Message is the queued commit's message: the change's record as its owner made it, its
	// Change.Request and the queue's trailers.
	Message string
	// Author is the owner's author.
	Author Signature
}

// Refusal is a change refused on the tip it would have landed on: its owner exits with Code
// and prints Message, as if it had been refused alone.
type Refusal struct {
	Code    int
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// queuedRef is a ref of the queue (or of an outcome) as the server lists it.
type queuedRef struct {
	id       string
	name     plumbing.ReferenceName
	commit   plumbing.Hash
	deadline time.Time
}

// queueView is what the server's refs say about the branch and its queue.
type queueView struct {
	tip      plumbing.Hash
	queue    []queuedRef          // sorted by id: by arrival
	outcomes map[string]queuedRef // by id
}

// find returns the queued change id.
func (v queueView) find(id string) (queuedRef, bool) {
	for _, q := range v.queue {
		if q.id == id {
			return q, true
		}
	}
	return queuedRef{}, false
}

// live are the queued changes whose deadline has not passed (by skew).
func (v queueView) live(now time.Time, skew time.Duration) []queuedRef {
	var out []queuedRef
	for _, q := range v.queue {
		if !expired(q.deadline, now, skew) {
			out = append(out, q)
		}
	}
	return out
}

// expired reports whether a change with this deadline must no longer land: skew before it, so
// that a lander whose clock is up to skew behind its owner's never lands it after its owner
// gave up.
func expired(deadline, now time.Time, skew time.Duration) bool {
	return !now.Before(deadline.Add(-skew))
}

// view reads the branch's tip and queue from the server's refs.
func (r *Repo) view(refs map[string]plumbing.Hash) queueView {
	v := queueView{tip: refs[r.remote.branch.String()], outcomes: map[string]queuedRef{}}
	qp, op := queuePrefix+r.opts.Branch+"/", outcomePrefix+r.opts.Branch+"/"
	for name, h := range refs {
		var prefix string
		switch {
		case strings.HasPrefix(name, qp):
			prefix = qp
		case strings.HasPrefix(name, op):
			prefix = op
		default:
			continue
		}
		id := name[len(prefix):]
		deadline, ok := parseChangeID(id)
		if !ok {
			continue // not deliver's: a ref it neither reads nor deletes
		}
		q := queuedRef{id: id, name: plumbing.ReferenceName(name), commit: h, deadline: deadline}
		if prefix == qp {
			v.queue = append(v.queue, q)
		} else {
			v.outcomes[id] = q
		}
	}
	sort.Slice(v.queue, func(i, j int) bool { return v.queue[i].id < v.queue[j].id })
	return v
}

// newChangeID makes a change id: the time of arrival in Unix nanoseconds (zero-padded, so ids
// sort by arrival), the deadline in Unix seconds, and 8 random hex digits.
func newChangeID(now, deadline time.Time) string {
	var b [4]byte
	_, _ = crand.Read(b[:])
	return fmt.Sprintf("%019d-%010d-%s", now.UnixNano(), deadline.Unix(), hex.EncodeToString(b[:]))
}

// parseChangeID returns the deadline a change id carries.
func parseChangeID(id string) (deadline time.Time, ok bool) {
	parts := strings.Split(id, "-")
	if len(parts) != 3 || len(parts[0]) != 19 || len(parts[1]) != 10 || len(parts[2]) != 8 {
		return time.Time{}, false
	}
	if _, err := strconv.ParseUint(parts[0], 10, 64); err != nil {
		return time.Time{}, false
	}
	secs, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	if _, err := hex.DecodeString(parts[2]); err != nil {
		return time.Time{}, false
	}
	return time.Unix(secs, 0), true
}

// appendTrailers adds trailer lines to msg's trailer block (its last paragraph when that is
// made of "Key: value" lines, else a new one).
func appendTrailers(msg string, lines ...string) string {
	msg = strings.TrimRight(msg, "\n")
	last := msg
	if i := strings.LastIndex(msg, "\n\n"); i >= 0 {
		last = msg[i+2:]
	}
	if !strings.Contains(msg, "\n\n") || !isTrailerBlock(last) {
		msg += "\n"
	}
	var b strings.Builder
	b.WriteString(msg)
	b.WriteString("\n")
	for _, l := range lines {
		l = strings.TrimRight(l, "\n")
		if l == "" {
			continue
		}
		b.WriteString(l)
		b.WriteString("\n")
	}
	return b.String()
}

func isTrailerBlock(p string) bool {
	for _, l := range strings.Split(p, "\n") {
		k, _, ok := strings.Cut(l, ": ")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return false
		}
	}
	return true
}

// trailer returns the value of key in msg's trailer block ("" when absent).
func trailer(msg, key string) string {
	msg = strings.TrimRight(strings.ReplaceAll(msg, "\r\n", "\n"), "\n")
	if i := strings.LastIndex(msg, "\n\n"); i >= 0 {
		msg = msg[i+2:]
	}
	for _, l := range strings.Split(msg, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// pending is this run's change while it waits in the queue.
type pending struct {
	id      string
	ref     plumbing.ReferenceName
	outcome plumbing.ReferenceName
	// commit is the queued commit, objects what the server needs of it.
	commit  plumbing.Hash
	objects []plumbing.Hash
	// base is the tip the change was made on.
	base plumbing.Hash
	// until is when the run stops waiting and withdraws (its deadline less the skew).
	until  time.Time
	edit   Edit
	author object.Signature
	// attempts counts the pushes the run made for its change (the plain ones and the
	// landings).
	attempts int
}

// newPending builds the queued commit of a change made on base: the tree of commit, the
// change's record (its Edit's message) with the request and the queue's trailers. The change's
// id is taken now, when it joins the queue, so that ids sort by arrival in the queue.
func (r *Repo) newPending(deadline time.Time, base, commit plumbing.Hash, objects []plumbing.Hash, record, request string, author object.Signature, edit Edit) (*pending, error) {
	c, err := r.repo.CommitObject(commit)
	if err != nil {
		return nil, fmt.Errorf("queueing the change: %w", err)
	}
	id := newChangeID(time.Now(), deadline)
	lines := append(strings.Split(strings.TrimRight(request, "\n"), "\n"),
		trailerChangeID+": "+id, trailerDeadline+": "+deadline.UTC().Format(time.RFC3339), trailerQueue+": "+queueVersion)
	qc := &object.Commit{Author: c.Author, Committer: c.Committer, Message: appendTrailers(record, lines...), TreeHash: c.TreeHash, ParentHashes: []plumbing.Hash{base}}
	h, err := r.storeCommit(qc)
	if err != nil {
		return nil, fmt.Errorf("queueing the change: %w", err)
	}
	objs := append([]plumbing.Hash{h}, objects...)
	for i, o := range objs {
		if o == commit {
			objs = append(objs[:i], objs[i+1:]...)
			break
		}
	}
	return &pending{
		id: id, ref: plumbing.ReferenceName(queuePrefix + r.opts.Branch + "/" + id),
		outcome: plumbing.ReferenceName(outcomePrefix + r.opts.Branch + "/" + id),
		commit:  h, objects: objs, base: base, until: deadline.Add(-r.opts.QueueSkew),
		edit: edit, author: author,
	}, nil
}

// storeCommit writes a commit object to the clone's storage.
func (r *Repo) storeCommit(c *object.Commit) (plumbing.Hash, error) {
	obj := r.st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.st.SetEncodedObject(obj)
}

// errQueueUnsupported: the server cannot hold the queue; Update falls back to retrying.
var errQueueUnsupported = errors.New("the config repo cannot hold deliver's queue")

// fallBack turns group commit off for this Repo, saying why once.
func (r *Repo) fallBack(why string) {
	if r.queueOff {
		return
	}
	r.queueOff = true
	r.opts.Logf("%s: concurrent deliver runs cannot land each other's changes on this server (group commit); falling back to retrying the push on the new tip", why)
}

// queueIn publishes the change on its queue ref in an open session. queued is false (and err
// nil) when the server cannot hold the queue: the caller falls back.
func (r *Repo) queueIn(ctx context.Context, rs *receiveSession, p *pending) (queued bool, err error) {
	if !rs.supportsAtomic() {
		r.fallBack("the config repo does not support atomic pushes")
		return false, nil
	}
	progress := &cappedWriter{max: maxServerMessages}
	err = rs.send(ctx, r.st, []*packp.Command{{Name: p.ref, Old: plumbing.ZeroHash, New: p.commit}}, p.objects, false, nil, progress)
	p.attempts++
	if err == nil {
		return true, nil
	}
	// The answer may have been lost: the refs tell whether the change is queued.
	cerr := classify(fmt.Sprintf("queueing the change on %s", r.url), err)
	ar, lerr := r.remote.advertised(ctx)
	if lerr != nil {
		return false, cerr
	}
	if ar.References[p.ref.String()] == p.commit {
		return true, nil
	}
	if errors.Is(cerr, ErrUnreachable) || errors.Is(cerr, ErrAuth) || errors.Is(cerr, ErrNotFound) {
		// Not a refusal of the namespace: the server may still be processing the request, so
		// the change must not be pushed another way.
		return false, cerr
	}
	why := fmt.Sprintf("the config repo refused the queue ref %s (%v", p.ref, err)
	if msg := strings.TrimSpace(progress.String()); msg != "" {
		why += "; server said: " + strings.Join(strings.Fields(msg), " ")
	}
	r.fallBack(why + ")")
	return false, nil
}

// queue publishes the change in a new session (after a plain push lost the race on the
// server). It returns the refs as they are once it is queued.
func (r *Repo) queue(ctx context.Context, p *pending) (queued bool, refs map[string]plumbing.Hash, err error) {
	rs, err := r.remote.openReceive(ctx)
	if err != nil {
		return false, nil, classify(fmt.Sprintf("queueing the change on %s", r.url), err)
	}
	defer rs.Close()
	queued, err = r.queueIn(ctx, rs, p)
	return queued, withRef(rs.refs(), p.ref, p.commit), err
}

// withRef is a copy of refs with name at h.
func withRef(refs map[string]plumbing.Hash, name plumbing.ReferenceName, h plumbing.Hash) map[string]plumbing.Hash {
	out := make(map[string]plumbing.Hash, len(refs)+1)
	for k, v := range refs {
		out[k] = v
	}
	out[name.String()] = h
	return out
}

// await waits for the queued change p to be decided, landing the queue when this run owns
// the oldest change (or the oldest has not moved for a while), until p's deadline. refs are
// the server's refs as last seen.
func (r *Repo) await(ctx context.Context, p *pending, refs map[string]plumbing.Hash) (Result, error) {
	v := r.view(refs)
	ahead := 0
	for _, q := range v.live(time.Now(), r.opts.QueueSkew) {
		if q.id < p.id {
			ahead++
		}
	}
	r.opts.Logf("lost the race to a concurrent push: the change waits in the queue as %s (%d ahead); the runs waiting land the queue together", p.ref, ahead)
	var key string
	queuedAt := time.Now()
	lastMove := queuedAt
	delay := time.Duration(0)
	pollCost := minPollCost
	gathered := false
	for {
		v = r.view(refs)
		if _, ok := v.find(p.id); !ok {
			return r.outcomeOf(ctx, p, v)
		}
		now := time.Now()
		if !now.Before(p.until) {
			return r.withdraw(ctx, p, fmt.Errorf("%w: gave up at the deadline (--push-timeout) after waiting in the queue as %s; the change was withdrawn and will not land", ErrConflict, p.ref))
		}
		live := v.live(now, r.opts.QueueSkew)
		first := ""
		if len(live) > 0 {
			first = live[0].id
		}
		if k := v.tip.String() + " " + first; k != key {
			key, lastMove, delay = k, now, 0
		}
		pos := 0
		for _, q := range live {
			if q.id < p.id {
				pos++
			}
		}
		// A queue that stands still is taken over by the next in line first, by the one after
		// it only if that does not help either, and so on: on a machine so loaded that the
		// first run's landing takes longer than QueueTakeover, one run lands beside it, not
		// every run waiting.
		stuck := pos > 0 && now.Sub(lastMove) > time.Duration(pos)*(r.opts.QueueTakeover+4*r.slowest)+time.Duration(len(live))*takeoverPerChange
		switch {
		case first == p.id && !gathered:
			// First in the queue: let the runs that lost the same race join it (their ids
			// may sort before this one), then land, if still first, what has gathered.
			gathered = true
			if !r.sleep(ctx, gatherDelay) {
				return r.withdraw(ctx, p, fmt.Errorf("%w: waiting in the queue as %s: %w", ErrConflict, p.ref, context.Cause(ctx)))
			}
			continue
		case first == p.id || stuck:
			if stuck && first != p.id {
				r.opts.Logf("the oldest queued change %s has not moved for %s: landing the queue", first, now.Sub(lastMove).Round(time.Millisecond))
			}
			res, done, err := r.land(ctx, p, stuck && first != p.id)
			if done || err != nil {
				return res, err
			}
			// Nothing landed (another run is landing, the server failed, the deadline
			// came): wait and read the queue again.
			lastMove, gathered = time.Now(), false
		}
		delay = pollDelay(delay, pos, pollCap(len(live), time.Since(queuedAt), pollCost))
		refs = nil
		select {
		case <-ctx.Done():
			return r.withdraw(ctx, p, fmt.Errorf("%w: waiting in the queue as %s: %w", ErrConflict, p.ref, context.Cause(ctx)))
		case <-time.After(min(delay, time.Until(p.until))):
		}
		for refs == nil {
			start := time.Now()
			next, err := r.poll(ctx, p)
			if err == nil {
				refs, pollCost = next, max(time.Since(start), minPollCost)
				break
			}
			if ctx.Err() != nil {
				return r.withdraw(ctx, p, fmt.Errorf("%w: waiting in the queue as %s: %w", ErrConflict, p.ref, context.Cause(ctx)))
			}
			if !time.Now().Before(p.until) {
				return r.withdraw(ctx, p, fmt.Errorf("%w: gave up at the deadline (--push-timeout) after waiting in the queue as %s, reading the queue failing: %v", ErrConflict, p.ref, err))
			}
			r.opts.Logf("reading the queue: %v", classify(fmt.Sprintf("listing the refs of %s", r.url), err))
			select {
			case <-ctx.Done():
			case <-time.After(min(pollDelay(delay, 0, maxPollCap), time.Until(p.until))):
			}
		}
	}
}

// gatherDelay is how long the first run in the queue waits before it lands it, so that the
// runs that lost the same race are queued by then and land in the same push.
const gatherDelay = 30 * time.Millisecond

// sleep waits d, or until ctx is done (false).
func (r *Repo) sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// pollDelay is how long a waiting run sleeps before it reads the refs again: about one
// landing's time for the changes ahead of it at first (or since the queue last moved), then
// growing by half each time the queue did not move, up to limit (pollCap); each with ±25%
// jitter.
func pollDelay(prev time.Duration, ahead int, limit time.Duration) time.Duration {
	d := 50*time.Millisecond + time.Duration(ahead+1)*20*time.Millisecond
	if prev > 0 {
		d = prev * 3 / 2
	}
	d = min(d, limit)
	return time.Duration(float64(d) * (0.75 + rand.Float64()/2))
}

// pollCap is the longest sleep between two reads of the queue for a run that has waited for
// waited among waiting runs, when one read takes pollCost.
//
// Once a landing has pushed, the runs it landed notice at their next read: the last of them
// about one sleep later, and the whole group's run ends with it. But every read costs the
// server (a ref advertisement) and the machines, and the waiting runs read together: each
// reading every sleep, they make waiting/sleep reads a second, which slow down the landing
// they wait for. Over a wait of about waited the reads cost waiting × waited × pollCost /
// sleep in all, and the last run to notice adds a sleep: the sum is least at sleep =
// √(waiting × waited × pollCost). pollCap is half that (most runs notice before the last),
// within [minPollCap, maxPollCap]. Measured on loopback (BENCHMARKS.md F4): with a fixed
// half second, 64 waiting runs cost the git server as much CPU as everything else they did.
func pollCap(waiting int, waited, pollCost time.Duration) time.Duration {
	c := time.Duration(math.Sqrt(float64(waiting)*waited.Seconds()*pollCost.Seconds()) / 2 * float64(time.Second))
	return min(max(c, minPollCap), maxPollCap)
}

// Bounds of pollCap, and the least cost of a read it assumes.
const (
	minPollCap  = 250 * time.Millisecond
	maxPollCap  = 2 * time.Second
	minPollCost = 5 * time.Millisecond
)

// land runs landings of the queue until one push decides this run's change (done), or this
// run cannot land now (not done).
func (r *Repo) land(ctx context.Context, p *pending, takeover bool) (res Result, done bool, err error) {
	for round := 1; ; round++ {
		if ctx.Err() != nil {
			res, err := r.withdraw(ctx, p, fmt.Errorf("%w: landing the queue: %w", ErrConflict, context.Cause(ctx)))
			return res, true, err
		}
		if !time.Now().Before(p.until) {
			return Result{}, false, nil
		}
		start := time.Now()
		b, err := r.prepareLanding(ctx, p, takeover)
		if b != nil && !b.notFirst {
			r.timed(start)
		}
		if err != nil {
			if errors.Is(err, errQueueRace) {
				continue
			}
			if errors.Is(err, ErrUnreachable) && ctx.Err() == nil {
				// A failure to talk to the server: wait, and land again later.
				r.opts.Logf("landing the queue: %v", err)
				return Result{}, false, nil
			}
			res, err := r.withdraw(ctx, p, fmt.Errorf("landing the queue: %w", err))
			return res, true, err
		}
		if b.gone {
			res, err := r.outcomeOf(ctx, p, b.view)
			return res, true, err
		}
		if b.notFirst || len(b.cmds) == 0 {
			return Result{}, false, nil
		}
		p.attempts++
		start = time.Now()
		landedErr := r.pushLanding(ctx, b)
		r.timed(start)
		if errors.Is(landedErr, errQueueRace) {
			// Another run landed first (or a change was withdrawn): wait, and see.
			r.opts.Logf("landing attempt %d lost the race to a concurrent push", round)
			return Result{}, false, nil
		}
		if landedErr != nil {
			if errors.Is(landedErr, errQueueUnsupported) {
				return r.withdrawAndFallBack(ctx, p, landedErr)
			}
			if errors.Is(landedErr, ErrUnreachable) && ctx.Err() == nil {
				r.opts.Logf("landing the queue: %v", landedErr)
				return Result{}, false, nil
			}
			res, err := r.withdraw(ctx, p, landedErr)
			return res, true, err
		}
		return r.landed(p, b)
	}
}

// errQueueRace: the branch or a queue ref changed under a landing; it starts over.
var errQueueRace = errors.New("the queue changed")

// isNotOurRef recognises the server's refusal to send a commit it no longer advertises (git
// upload-pack's "not our ref <id>"): a queued commit landed and its ref was deleted between
// the ref advertisement and the fetch. It matches the text because that is all there is: the
// server sends the refusal as an ERR packet line, which go-git hands on as a
// *pktline.ErrorLine or inside another error's message depending on the transport, with no
// typed error for it.
func isNotOurRef(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not our ref")
}

// landing is one landing of the queue, ready to push.
type landing struct {
	view queueView
	tip  plumbing.Hash // the branch's tip it builds on
	head plumbing.Hash // the last commit it made
	cmds []*packp.Command
	objs []plumbing.Hash
	gone bool // this run's change is no longer queued
	// notFirst: another change is first in the queue (and this run is not taking over).
	notFirst bool
	own      ownResult
	count    struct{ landed, refused, unchanged, expired, left int }
}

// ownResult is what a landing decided for this run's change.
type ownResult struct {
	decided bool
	commit  plumbing.Hash // landed as this commit
	parent  plumbing.Hash
	err     error // refused (its Edit's error), or expired
}

// prepareLanding fetches the branch's tip and the queued changes, and re-applies them on the
// tip in order, one commit each. Unless taking over, it fetches nothing when the refs show
// another change first in the queue (notFirst).
func (r *Repo) prepareLanding(ctx context.Context, p *pending, takeover bool) (*landing, error) {
	now := time.Now()
	notFirst := false
	res, err := r.fetch(ctx, fetchRequest{
		depth: 1, haves: []plumbing.Hash{r.fetched},
		wants: func(refs map[string]plumbing.Hash, tip plumbing.Hash) []plumbing.Hash {
			v := r.view(refs)
			live := v.live(now, r.opts.QueueSkew)
			if _, queued := v.find(p.id); queued && !takeover && (len(live) == 0 || live[0].id != p.id) {
				notFirst = true
				return nil
			}
			wants := []plumbing.Hash{tip}
			for _, q := range live {
				wants = append(wants, q.commit)
			}
			return wants
		},
	})
	if err != nil {
		if isNotOurRef(err) {
			return nil, errQueueRace // a queued commit was landed and deleted meanwhile
		}
		return nil, classify(fmt.Sprintf("fetching the queue of %s (branch %s)", r.url, r.opts.Branch), err)
	}
	b := &landing{view: r.view(res.refs), tip: res.tip, head: res.tip, notFirst: notFirst}
	if _, ok := b.view.find(p.id); !ok {
		b.gone = true
		return b, nil
	}
	if notFirst {
		return b, nil
	}
	r.fetched = res.tip
	if err := r.moveTo(res.tip); err != nil {
		return nil, fmt.Errorf("resetting the clone to %s: %w", res.tip, err)
	}
	lander := p.author
	lander.When = now
	now = time.Now()
	for _, q := range b.view.queue {
		mine := q.id == p.id
		if expired(q.deadline, now, r.opts.QueueSkew) {
			if mine {
				b.own = ownResult{decided: true, err: fmt.Errorf("%w: gave up at the deadline (--push-timeout) while the change waited in the queue as %s; it was withdrawn and will not land", ErrConflict, p.ref)}
				b.cmds = append(b.cmds, &packp.Command{Name: q.name, Old: q.commit})
				continue
			}
			if err := b.decide(r, q, outcomeExpired, 0, "the change's deadline passed before it could land", lander); err != nil {
				return nil, err
			}
			b.count.expired++
			continue
		}
		if _, decided := b.view.outcomes[q.id]; decided {
			// Decided already (an outcome exists): only its queue ref is left to remove.
			b.cmds = append(b.cmds, &packp.Command{Name: q.name, Old: q.commit})
			continue
		}
		var msg string
		var paths []string
		var author object.Signature
		if mine {
			author = p.author
			msg, paths, err = p.edit(ctx, r.Dir())
		} else {
			c, cerr := r.repo.CommitObject(q.commit)
			if cerr != nil {
				r.opts.Logf("queued change %s: its commit was not fetched (%v); leaving it queued", q.id, cerr)
				b.count.left++
				continue
			}
			author = c.Author
			if v := trailer(c.Message, trailerQueue); v != queueVersion {
				r.opts.Logf("queued change %s: queue format %q is not this deliver's (%s); leaving it to its owner", q.id, v, queueVersion)
				b.count.left++
				continue
			}
			msg, paths, err = r.opts.Replay(ctx, r.Dir(), Queued{ID: q.id, Message: c.Message, Author: Signature(c.Author)})
		}
		r.touched = append(r.touched, paths...)
		if err != nil {
			if rerr := r.restore(b.head, paths); rerr != nil {
				return nil, rerr
			}
			if ctx.Err() != nil {
				return nil, classify("landing the queue", ctx.Err())
			}
			var refusal *Refusal
			switch {
			case mine:
				b.own = ownResult{decided: true, err: err}
				b.cmds = append(b.cmds, &packp.Command{Name: q.name, Old: q.commit})
			case errors.As(err, &refusal):
				if err := b.decide(r, q, outcomeRefused, refusal.Code, refusal.Message, lander); err != nil {
					return nil, err
				}
				b.count.refused++
				r.opts.Logf("queued change %s of %s: refused (exit %d): %s", q.id, author.Name, refusal.Code, refusal.Message)
			default:
				b.count.left++
				r.opts.Logf("queued change %s of %s: left queued for its owner: %v", q.id, author.Name, err)
			}
			continue
		}
		msg = appendTrailers(msg, trailerChangeID+": "+q.id)
		commit, objects, changed, err := r.commit(b.head, msg, paths, author, lander)
		if err != nil {
			return nil, err
		}
		if !changed {
			if mine {
				b.own = ownResult{decided: true}
				b.cmds = append(b.cmds, &packp.Command{Name: q.name, Old: q.commit})
			} else {
				if err := b.decide(r, q, outcomeUnchanged, 0, "the tip already held the change: nothing to commit", lander); err != nil {
					return nil, err
				}
				b.count.unchanged++
			}
			continue
		}
		if mine {
			b.own = ownResult{decided: true, commit: commit, parent: b.head}
			b.cmds = append(b.cmds, &packp.Command{Name: q.name, Old: q.commit})
		} else {
			b.cmds = append(b.cmds, &packp.Command{Name: q.name, Old: q.commit},
				&packp.Command{Name: outcomeName(r.opts.Branch, q.id), New: commit})
			b.count.landed++
		}
		b.head = commit
		b.objs = append(b.objs, objects...)
	}
	// Outcomes nobody will read any more go with this push.
	for _, o := range b.view.outcomes {
		if now.After(o.deadline.Add(outcomeRetention)) {
			b.cmds = append(b.cmds, &packp.Command{Name: o.name, Old: o.commit})
		}
	}
	if b.head != b.tip {
		b.cmds = append([]*packp.Command{{Name: r.remote.branch, Old: b.tip, New: b.head}}, b.cmds...)
	}
	if !b.own.decided && len(b.cmds) > 0 && b.head == b.tip && b.count.expired+b.count.refused+b.count.unchanged == 0 {
		// Only clean-up to push and this run's change still waits: not worth a push.
		b.cmds = nil
	}
	return b, nil
}

func outcomeName(branch, id string) plumbing.ReferenceName {
	return plumbing.ReferenceName(outcomePrefix + branch + "/" + id)
}

// decide records an outcome other than landing for another run's change: its queue ref goes
// and its outcome ref points at a commit (on the tip's tree, its parent the queued commit)
// whose message says what happened.
func (b *landing) decide(r *Repo, q queuedRef, outcome string, code int, message string, lander object.Signature) error {
	tip, err := r.repo.CommitObject(b.tip)
	if err != nil {
		return fmt.Errorf("reading commit %s: %w", b.tip, err)
	}
	lines := []string{trailerChangeID + ": " + q.id, trailerOutcome + ": " + outcome}
	if outcome == outcomeRefused {
		lines = append(lines, trailerExitCode+": "+strconv.Itoa(code))
	}
	msg := fmt.Sprintf("deliver: queued change %s %s\n\n%s\n\n%s", q.id, outcome, strings.TrimRight(message, "\n"), strings.Join(lines, "\n")+"\n")
	lander = headerSafe(lander)
	h, err := r.storeCommit(&object.Commit{Author: lander, Committer: lander, Message: msg, TreeHash: tip.TreeHash, ParentHashes: []plumbing.Hash{q.commit}})
	if err != nil {
		return fmt.Errorf("recording the outcome of %s: %w", q.id, err)
	}
	b.cmds = append(b.cmds, &packp.Command{Name: q.name, Old: q.commit}, &packp.Command{Name: outcomeName(r.opts.Branch, q.id), New: h})
	b.objs = append(b.objs, h)
	return nil
}

// outcomeMessage reads the message an outcome commit records (between its subject and its
// trailers).
func outcomeMessage(msg string) string {
	msg = strings.TrimRight(msg, "\n")
	first := strings.Index(msg, "\n\n")
	last := strings.LastIndex(msg, "\n\n")
	if first < 0 || last <= first {
		return ""
	}
	return msg[first+2 : last]
}

// pushLanding pushes a landing as one atomic request. It returns errQueueRace when the branch
// or a ref of the queue changed meanwhile, errQueueUnsupported when the server refused it for
// another reason (a hook on refs/deliver/, no atomic pushes).
func (r *Repo) pushLanding(ctx context.Context, b *landing) error {
	rs, err := r.remote.openReceive(ctx)
	if err != nil {
		return classify(fmt.Sprintf("pushing to %s (branch %s)", r.url, r.opts.Branch), err)
	}
	defer rs.Close()
	if !rs.supportsAtomic() {
		return fmt.Errorf("%w: it does not support atomic pushes", errQueueUnsupported)
	}
	if !b.expected(rs.refs()) {
		return errQueueRace
	}
	progress := &cappedWriter{max: maxServerMessages}
	sendErr := rs.send(ctx, r.st, b.cmds, b.objs, true, nil, progress)
	if sendErr == nil {
		return nil
	}
	ar, err := r.remote.advertised(ctx)
	if err != nil {
		return classify(fmt.Sprintf("pushing to %s (branch %s)", r.url, r.opts.Branch), sendErr)
	}
	if b.applied(ar.References) {
		return nil // the server took it; its answer was lost
	}
	if !b.expected(ar.References) {
		return errQueueRace
	}
	err = sendErr
	if msg := strings.TrimSpace(progress.String()); msg != "" {
		err = fmt.Errorf("%w\nserver said:\n%s", err, indent(msg))
	}
	err = classify(fmt.Sprintf("pushing to %s (branch %s)", r.url, r.opts.Branch), err)
	if errors.Is(err, ErrAuth) || errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("%w: %v", errQueueUnsupported, err)
}

// expected reports whether every ref the landing updates is still where it was read.
func (b *landing) expected(refs map[string]plumbing.Hash) bool {
	for _, c := range b.cmds {
		if refs[c.Name.String()] != c.Old {
			return false
		}
	}
	return true
}

// applied reports whether the server's refs are what the landing makes them.
func (b *landing) applied(refs map[string]plumbing.Hash) bool {
	for _, c := range b.cmds {
		if refs[c.Name.String()] != c.New {
			return false
		}
	}
	return true
}

// landed finishes a landing that the server took.
func (r *Repo) landed(p *pending, b *landing) (Result, bool, error) {
	r.fetched = b.head
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{{b.count.landed, "landed"}, {b.count.refused, "refused"}, {b.count.unchanged, "unchanged"}, {b.count.expired, "expired"}, {b.count.left, "left for their owners"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	others := "no other run's change"
	if len(parts) > 0 {
		others = "other runs' changes: " + strings.Join(parts, ", ")
	}
	if b.head != b.tip {
		r.opts.Logf("landed the queue on %s in one push, up to %s (%s)", short(b.tip), short(b.head), others)
	}
	if !b.own.decided {
		return Result{}, false, nil
	}
	if b.own.err != nil {
		return Result{Attempts: p.attempts}, true, b.own.err
	}
	if b.own.commit.IsZero() {
		return Result{Changed: false, Commit: b.head.String(), Parent: b.head.String(), Attempts: p.attempts, Queued: true}, true, nil
	}
	// The work tree holds the queue's last change: move it to this run's.
	if err := r.moveTo(b.own.commit); err != nil {
		return Result{}, true, fmt.Errorf("resetting the clone to %s: %w", b.own.commit, err)
	}
	return Result{Changed: true, Commit: b.own.commit.String(), Parent: b.own.parent.String(), Attempts: p.attempts, Queued: true, Landed: b.count.landed + 1}, true, nil
}

// poll reads the server's refs; when they show this run's change decided, it fetches the
// outcome in the same session (see fetchOutcome).
func (r *Repo) poll(ctx context.Context, p *pending) (map[string]plumbing.Hash, error) {
	res, err := r.fetchOutcome(ctx, func(refs map[string]plumbing.Hash) plumbing.Hash {
		v := r.view(refs)
		if _, queued := v.find(p.id); queued {
			return plumbing.ZeroHash
		}
		return v.outcomes[p.id].commit
	})
	if err != nil {
		return nil, err
	}
	return res.refs, nil
}

// fetchOutcome fetches the commit pick chooses from the server's refs (nothing when it
// chooses none), two commits deep (the landed commit and its parent, which the caller may
// move to) and without blobs over MaxFileSize.
func (r *Repo) fetchOutcome(ctx context.Context, pick func(refs map[string]plumbing.Hash) plumbing.Hash) (fetchResult, error) {
	return r.fetch(ctx, fetchRequest{
		depth: 2, haves: []plumbing.Hash{r.fetched},
		wants: func(refs map[string]plumbing.Hash, _ plumbing.Hash) []plumbing.Hash {
			if h := pick(refs); !h.IsZero() {
				return []plumbing.Hash{h}
			}
			return nil
		},
	})
}

// outcomeOf reads what became of this run's change once it left the queue.
func (r *Repo) outcomeOf(ctx context.Context, p *pending, v queueView) (Result, error) {
	o, ok := v.outcomes[p.id]
	if !ok {
		return Result{Attempts: p.attempts}, fmt.Errorf("%w: the queued change %s left the queue without an outcome (someone deleted its ref): it did not land", ErrRejected, p.ref)
	}
	if r.st.HasEncodedObject(o.commit) != nil {
		if _, err := r.fetchOutcome(ctx, func(map[string]plumbing.Hash) plumbing.Hash { return o.commit }); err != nil {
			return Result{Attempts: p.attempts}, classify(fmt.Sprintf("reading the outcome of the queued change %s", p.ref), err)
		}
	}
	c, err := r.repo.CommitObject(o.commit)
	if err != nil {
		return Result{Attempts: p.attempts}, fmt.Errorf("reading the outcome of the queued change %s: %w", p.ref, err)
	}
	if trailer(c.Message, trailerChangeID) != p.id {
		return Result{Attempts: p.attempts}, fmt.Errorf("%w: the outcome %s of the queued change is not about it", ErrRejected, o.name)
	}
	switch outcome := trailer(c.Message, trailerOutcome); outcome {
	case "":
		if err := r.moveTo(c.Hash); err != nil {
			return Result{}, fmt.Errorf("resetting the clone to %s: %w", c.Hash, err)
		}
		r.fetched = c.Hash
		parent := plumbing.ZeroHash
		if len(c.ParentHashes) > 0 {
			parent = c.ParentHashes[0]
		}
		return Result{Changed: true, Commit: c.Hash.String(), Parent: parent.String(), Attempts: p.attempts, Queued: true,
			LandedBy: fmt.Sprintf("%s <%s>", c.Committer.Name, c.Committer.Email)}, nil
	case outcomeRefused:
		code, err := strconv.Atoi(trailer(c.Message, trailerExitCode))
		if err != nil {
			code = 1
		}
		return Result{Attempts: p.attempts}, &Refusal{Code: code, Message: outcomeMessage(c.Message)}
	case outcomeUnchanged:
		if err := r.fetchAndReset(ctx); err != nil {
			return Result{}, err
		}
		return Result{Changed: false, Commit: r.fetched.String(), Parent: r.fetched.String(), Attempts: p.attempts, Queued: true}, nil
	case outcomeExpired:
		return Result{Attempts: p.attempts}, fmt.Errorf("%w: the deadline (--push-timeout) passed while the change waited in the queue as %s (judged by %s's clock): it did not land", ErrConflict, p.ref, c.Committer.Name)
	default:
		return Result{Attempts: p.attempts}, fmt.Errorf("%w: unknown outcome %q of the queued change %s", ErrRejected, outcome, p.ref)
	}
}

// withdraw takes this run's change out of the queue (it gave up, or was interrupted) and
// returns why; when a lander decided it first, it returns that outcome instead.
func (r *Repo) withdraw(ctx context.Context, p *pending, why error) (Result, error) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), withdrawTimeout)
	defer cancel()
	rs, err := r.remote.openReceive(wctx)
	if err != nil {
		return Result{Attempts: p.attempts}, fmt.Errorf("%w; withdrawing the queued change %s failed too (it may still land before its deadline): %v", why, p.ref, err)
	}
	defer rs.Close()
	v := r.view(rs.refs())
	if _, ok := v.find(p.id); !ok {
		return r.outcomeOf(wctx, p, v)
	}
	err = rs.send(wctx, r.st, []*packp.Command{{Name: p.ref, Old: p.commit}}, nil, false, nil, nil)
	if err == nil {
		r.opts.Logf("withdrew the queued change %s", p.ref)
		return Result{Attempts: p.attempts}, why
	}
	ar, lerr := r.remote.advertised(wctx)
	if lerr == nil {
		if v := r.view(ar.References); func() bool { _, ok := v.find(p.id); return !ok }() {
			return r.outcomeOf(wctx, p, v)
		}
	}
	return Result{Attempts: p.attempts}, fmt.Errorf("%w; withdrawing the queued change %s failed too (it may still land before its deadline): %v", why, p.ref, err)
}

// withdrawAndFallBack withdraws this run's change after the server refused a landing, and
// lets Update retry without the queue. A change that cannot be withdrawn is not pushed again.
func (r *Repo) withdrawAndFallBack(ctx context.Context, p *pending, why error) (Result, bool, error) {
	r.fallBack(fmt.Sprintf("the config repo refused a landing of the queue (%v)", why))
	res, err := r.withdraw(ctx, p, errFellBack)
	return res, true, err
}

// errFellBack: the change was withdrawn from the queue; Update retries it the old way.
var errFellBack = errors.New("withdrawn from the queue; retrying without it")

// restore writes paths back as they are in commit (an edit that failed half-way).
func (r *Repo) restore(commit plumbing.Hash, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	c, err := r.repo.CommitObject(commit)
	if err != nil {
		return fmt.Errorf("reading commit %s: %w", commit, err)
	}
	return r.wt.restore(c.TreeHash, paths)
}

// Package flux hands deliver's pushed commit to Flux: a Kustomization (kustomize.toolkit.fluxcd.io/v1)
// and the GitRepository (source.toolkit.fluxcd.io/v1) it builds from. It implements
// engine.Engine with the dynamic client and unstructured objects, so it depends on no Flux
// module and reads whichever Flux v1 API the cluster serves.
//
// Sync annotates the GitRepository only, with reconcile.fluxcd.io/requestedAt as the flux CLI
// does: kustomize-controller follows a new artifact by itself, and annotating the Kustomization
// too would first re-run the old revision (after a failed health check, for its whole timeout).
// It then reads both objects until:
//
//  1. the source's artifact revision contains the pushed commit (it is that commit or a later
//     push, as the config repo's history says);
//  2. the Kustomization's lastAppliedRevision contains it, with Ready=True for the current
//     generation (or a later revision already being tried: that is another pipeline's);
//  3. the workloads of the Kustomization's inventory that run the deployed images are rolled
//     out (engine.WaitRollout: kstatus, as the direct apply waits).
//
// A Kustomization that tried a revision containing the commit and reports Ready=False (any
// reason but Progressing: BuildFailed, ReconciliationFailed, HealthCheckFailed, ArtifactFailed,
// ...) ends the wait at once, quoting Flux's reason and message. Reasons are matched, never
// messages: Flux's messages vary from run to run.
package flux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/deliverhq/deliver/step/cluster"
	"github.com/deliverhq/deliver/step/engine"
)

// RequestedAtAnnotation asks a Flux controller to reconcile an object now; its value is the
// time of the request.
const RequestedAtAnnotation = "reconcile.fluxcd.io/requestedAt"

const (
	defaultTimeout = 5 * time.Minute
	// pollMin and pollMax bound the time between two reads of the Flux objects: quick while
	// something changes, slower while nothing does.
	pollMin = 100 * time.Millisecond
	pollMax = 500 * time.Millisecond
	// readTimeout bounds one read, so a cluster that stops answering shows up as failed reads
	// well before the wait's deadline.
	readTimeout = 10 * time.Second
)

// Options name the Kustomization and say what deliver pushes to.
type Options struct {
	// Namespace and Name of the Kustomization.
	Namespace, Name string
	// Branch deliver pushes to: Check refuses a source that follows another one.
	Branch string
	// URL of the config repo as deliver reaches it; Check warns when the source fetches
	// another URL (it may be a mirror or another name of the same server).
	URL string
	// Path of the environment's overlay in the repo, e.g. "overlays/staging"; Check warns when
	// the Kustomization builds another directory.
	Path string
	// Warn receives warnings; nil drops them.
	Warn func(message string)
}

// Flux drives one Kustomization. Create it with New.
type Flux struct {
	c    *cluster.Client
	opts Options
}

var _ engine.Engine = (*Flux)(nil)

// New returns the Flux engine for the Kustomization o.Namespace/o.Name, reached through c.
func New(c *cluster.Client, o Options) *Flux {
	if o.Warn == nil {
		o.Warn = func(string) {}
	}
	return &Flux{c: c, opts: o}
}

func (f *Flux) String() string {
	return "Flux Kustomization " + f.opts.Namespace + "/" + f.opts.Name
}

func (f *Flux) kustomization() cluster.ObjectRef {
	return cluster.ObjectRef{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Kustomization", Namespace: f.opts.Namespace, Name: f.opts.Name}
}

// objects are the two Flux objects as read together.
type objects struct {
	ks, src    *unstructured.Unstructured
	srcRef     cluster.ObjectRef
	state      engine.State
	ksSuspend  bool
	srcSuspend bool
}

// read reads the Kustomization and its source and fills in their state. Errors wrap
// engine.ErrNotFound, engine.ErrUnsupported or package cluster's sentinels.
func (f *Flux) read(ctx context.Context) (*objects, error) {
	ref := f.kustomization()
	ks, err := f.c.Get(ctx, ref)
	if err != nil {
		return nil, notFound(err, f.String())
	}
	o := &objects{ks: ks}
	st := &o.state
	st.Object = ref.String()
	st.Path, _, _ = unstructured.NestedString(ks.Object, "spec", "path")
	o.ksSuspend, _, _ = unstructured.NestedBool(ks.Object, "spec", "suspend")
	st.Ready, st.Reason, st.Message = condition(ks, "Ready")
	applied, _, _ := unstructured.NestedString(ks.Object, "status", "lastAppliedRevision")
	st.Applied = commitOf(applied)
	st.Attempted = commitOf(attempted(ks))

	kind, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "kind")
	name, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "name")
	ns, _, _ := unstructured.NestedString(ks.Object, "spec", "sourceRef", "namespace")
	if ns == "" {
		ns = ks.GetNamespace()
	}
	if kind != "GitRepository" {
		return o, fmt.Errorf("%w: %s builds from a %s, and deliver can follow a GitRepository only", engine.ErrUnsupported, f, kind)
	}
	o.srcRef = cluster.ObjectRef{Group: "source.toolkit.fluxcd.io", Version: "v1", Kind: "GitRepository", Namespace: ns, Name: name}
	st.Source = o.srcRef.String()
	src, err := f.c.Get(ctx, o.srcRef)
	if err != nil {
		return o, notFound(err, "its source "+o.srcRef.String())
	}
	o.src = src
	st.SourceURL, _, _ = unstructured.NestedString(src.Object, "spec", "url")
	st.SourceBranch = sourceBranch(src)
	o.srcSuspend, _, _ = unstructured.NestedBool(src.Object, "spec", "suspend")
	fetched, _, _ := unstructured.NestedString(src.Object, "status", "artifact", "revision")
	st.Fetched = commitOf(fetched)
	switch {
	case o.ksSuspend:
		st.Suspended, st.SuspendedBy = true, suspendedBy(ks)
	case o.srcSuspend:
		st.Suspended, st.SuspendedBy = true, suspendedBy(src)
	}
	return o, nil
}

// notFound wraps a missing object, or a kind the cluster does not serve, in engine.ErrNotFound.
func notFound(err error, what string) error {
	switch {
	case errors.Is(err, cluster.ErrNotFound):
		return fmt.Errorf("%w: %s does not exist: %w", engine.ErrNotFound, what, err)
	case errors.Is(err, cluster.ErrInvalid):
		return fmt.Errorf("%w: %s: the cluster does not serve the Flux v1 API (is Flux installed?): %w", engine.ErrNotFound, what, err)
	}
	return err
}

// Check reads the Kustomization and its GitRepository and refuses what deliver cannot hand a
// commit to: a suspended object (engine.ErrSuspended, naming who suspended it), a missing one
// (engine.ErrNotFound), a source that is not a GitRepository or follows something other than
// the branch deliver pushes to (engine.ErrUnsupported). A source URL or build path other than
// deliver's is only warned about.
func (f *Flux) Check(ctx context.Context) (engine.State, error) {
	o, err := f.read(ctx)
	if err != nil {
		if o != nil {
			return o.state, err
		}
		return engine.State{}, err
	}
	st := o.state
	if st.Suspended {
		what := st.Object
		if !o.ksSuspend {
			what = "its source " + st.Source
		}
		return st, fmt.Errorf("%w: %s: %s is suspended%s, so Flux would not apply the change; resume it (flux resume) or deploy without Flux",
			engine.ErrSuspended, f, what, by(st.SuspendedBy))
	}
	if ref := refOtherThanBranch(o.src); ref != "" {
		return st, fmt.Errorf("%w: %s fetches %s, not a branch: deliver's pushes to branch %s would not be applied", engine.ErrUnsupported, st.Source, ref, f.opts.Branch)
	}
	if f.opts.Branch != "" && st.SourceBranch != f.opts.Branch {
		return st, fmt.Errorf("%w: %s follows branch %s, but deliver pushes to branch %s", engine.ErrUnsupported, st.Source, st.SourceBranch, f.opts.Branch)
	}
	if f.opts.URL != "" && !sameRepo(st.SourceURL, f.opts.URL) {
		f.opts.Warn(fmt.Sprintf("%s fetches %s, deliver pushes to %s: deliver waits for its commit there all the same", st.Source, redactURL(st.SourceURL), redactURL(f.opts.URL)))
	}
	if f.opts.Path != "" && path.Clean(strings.TrimPrefix(st.Path, "./")) != path.Clean(f.opts.Path) {
		f.opts.Warn(fmt.Sprintf("%s builds %q, not the overlay %s: deliver waits for the revision all the same", st.Object, st.Path, f.opts.Path))
	}
	return st, nil
}

func by(who string) string {
	if who == "" {
		return ""
	}
	return " by " + who
}

// Sync asks Flux to fetch the source now and waits; see the package documentation and
// engine.Engine.
func (f *Flux) Sync(ctx context.Context, req engine.Request) (engine.Result, error) {
	start := time.Now()
	if req.Timeout <= 0 {
		req.Timeout = defaultTimeout
	}
	if req.Progress == nil {
		req.Progress = func(string) {}
	}
	wctx, cancel := context.WithTimeout(ctx, req.Timeout)
	defer cancel()
	o, err := f.readFresh(wctx)
	if err != nil {
		return engine.Result{}, err
	}
	if o.state.Suspended {
		_, err := f.Check(wctx)
		return engine.Result{}, err
	}
	token := time.Now().Format(time.RFC3339Nano)
	if err := f.annotate(wctx, o.srcRef, token); err != nil {
		return engine.Result{}, fmt.Errorf("asking Flux to fetch %s now: %w", o.srcRef, err)
	}
	if req.Reapply {
		if err := f.annotate(wctx, f.kustomization(), token); err != nil {
			return engine.Result{}, fmt.Errorf("asking Flux to apply %s again: %w", f.kustomization(), err)
		}
	}
	w := &waiter{f: f, req: req, start: start, contains: map[string]bool{}, srcRef: o.srcRef}
	if req.Reapply {
		w.token = token
	}
	req.Progress(fmt.Sprintf("%s: asked Flux to fetch %s now; waiting for %s", f.kustomization(), o.srcRef, engine.ShortCommit(req.Commit)))
	res, err := w.run(ctx, wctx, o)
	if err != nil {
		return res, err
	}
	inventory, err := inventoryOf(w.last.ks)
	if err != nil {
		return res, fmt.Errorf("reading the inventory of %s: %w", f.kustomization(), err)
	}
	remaining := time.Until(start.Add(req.Timeout))
	if remaining <= 0 {
		return res, fmt.Errorf("%w: %s applied %s, but no time is left to wait for the workloads", cluster.ErrRolloutFailed, f.kustomization(), engine.ShortCommit(res.Revision))
	}
	res.Workloads, err = engine.WaitRollout(ctx, f.c, inventory, req.Images, remaining, req.Progress)
	if err != nil {
		return res, fmt.Errorf("%s applied %s; %w", f.kustomization(), engine.ShortCommit(res.Revision), err)
	}
	res.RolledOut = time.Since(start)
	if len(res.Workloads) == 0 && len(req.Images) > 0 {
		req.Progress(fmt.Sprintf("%s: no workload it applied runs %s (a later push may have replaced it)", f.kustomization(), strings.Join(req.Images, ", ")))
	}
	return res, nil
}

// readFresh is read with a bound of its own.
func (f *Flux) readFresh(ctx context.Context) (*objects, error) {
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	return f.read(rctx)
}

// annotate sets the reconcile.fluxcd.io/requestedAt annotation of ref to token, as `flux
// reconcile` does: the controller reconciles the object at once and echoes the token in
// status.lastHandledReconcileAt when done.
func (f *Flux) annotate(ctx context.Context, ref cluster.ObjectRef, token string) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{RequestedAtAnnotation: token}}})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	_, err = f.c.MergePatch(rctx, ref, patch)
	return err
}

// waiter follows the two Flux objects until the Kustomization applied the commit.
type waiter struct {
	f         *Flux
	req       engine.Request
	start     time.Time
	srcRef    cluster.ObjectRef
	contains  map[string]bool // revision -> contains req.Commit, as decided
	undecided error           // the last error deciding it
	last      *objects
	fetched   time.Duration
	shown     map[string]string // object -> the progress line last shown for it
	readErr   error             // the last error reading the objects
	token     string            // with Request.Reapply: the request the Kustomization must have handled
}

// run polls until the Kustomization applied a revision containing the commit (it returns the
// result so far), Flux reports a failure for such a revision, ctx ends or wctx runs out.
func (w *waiter) run(ctx, wctx context.Context, o *objects) (engine.Result, error) {
	w.shown = map[string]string{}
	delay := pollMin
	for {
		if o != nil {
			w.last, w.readErr = o, nil
			changed := w.observe(wctx, o)
			if o.state.Suspended {
				_, err := w.f.Check(wctx)
				return engine.Result{}, err
			}
			if rev, ok := w.applied(wctx, o); ok {
				return engine.Result{Revision: rev, Fetched: w.fetched, Applied: time.Since(w.start)}, nil
			}
			if err := w.failed(wctx, o); err != nil {
				return engine.Result{}, err
			}
			if changed {
				delay = pollMin
			}
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return engine.Result{}, fmt.Errorf("waiting for %s: %w", w.f, context.Cause(ctx))
		case <-wctx.Done():
			timer.Stop()
			if ctx.Err() != nil {
				return engine.Result{}, fmt.Errorf("waiting for %s: %w", w.f, context.Cause(ctx))
			}
			return engine.Result{}, w.timedOut()
		case <-timer.C:
		}
		delay = min(2*delay, pollMax)
		var err error
		o, err = w.f.readFresh(wctx)
		if err != nil {
			if errors.Is(err, cluster.ErrUnauthorized) || errors.Is(err, engine.ErrNotFound) || errors.Is(err, engine.ErrUnsupported) {
				return engine.Result{}, err
			}
			w.readErr, o = err, nil
		}
	}
}

// revisionContains decides, once per revision, whether it contains the commit.
func (w *waiter) revisionContains(ctx context.Context, rev string) bool {
	if rev == "" {
		return false
	}
	if rev == w.req.Commit {
		return true
	}
	if got, ok := w.contains[rev]; ok {
		return got
	}
	if w.req.Contains == nil {
		return false
	}
	got, err := w.req.Contains(ctx, rev, w.req.Commit)
	if err != nil {
		// Not cached: the history may be readable on the next poll. Reported if time runs out.
		w.undecided = err
		return false
	}
	w.contains[rev] = got
	return got
}

// observe records when the source fetched the commit and shows what changed; it reports
// whether anything did.
func (w *waiter) observe(ctx context.Context, o *objects) bool {
	changed := false
	show := func(obj, line string) {
		if w.shown[obj] != line {
			w.shown[obj] = line
			w.req.Progress(obj + ": " + line)
			changed = true
		}
	}
	st := o.state
	if w.fetched == 0 && w.revisionContains(ctx, st.Fetched) {
		w.fetched = time.Since(w.start)
	}
	srcReady, srcReason, srcMsg := condition(o.src, "Ready")
	switch {
	case w.fetched > 0:
		show(st.Source, fmt.Sprintf("fetched %s (%s after the request)", engine.ShortCommit(st.Fetched), engine.Elapsed(w.fetched)))
	case srcReady == "False":
		show(st.Source, fmt.Sprintf("not ready: %s: %s", srcReason, srcMsg))
	default:
		show(st.Source, fmt.Sprintf("at %s, fetching", orNone(engine.ShortCommit(st.Fetched))))
	}
	rec, _, recMsg := condition(o.ks, "Reconciling")
	switch {
	case st.Ready == "False":
		show(st.Object, fmt.Sprintf("Ready=False %s: %s", st.Reason, st.Message))
	case rec == "True":
		show(st.Object, recMsg)
	}
	return changed
}

func orNone(s string) string {
	if s == "" {
		return "no revision yet"
	}
	return s
}

// applied reports whether the Kustomization applied a revision containing the commit: its
// lastAppliedRevision contains it and it is Ready for its current generation, or it has moved
// on to trying a later revision (another pipeline's, which this wait does not judge).
func (w *waiter) applied(ctx context.Context, o *objects) (string, bool) {
	st := o.state
	if !w.revisionContains(ctx, st.Applied) {
		return "", false
	}
	gen := o.ks.GetGeneration()
	observed, _, _ := unstructured.NestedInt64(o.ks.Object, "status", "observedGeneration")
	readyNow := st.Ready == "True" && observed == gen && readyFor(o.ks, st.Applied)
	if !readyNow && (st.Attempted == "" || st.Attempted == st.Applied) {
		return "", false
	}
	if handled, _, _ := unstructured.NestedString(o.ks.Object, "status", "lastHandledReconcileAt"); w.token != "" && (handled != w.token || !readyNow) {
		return "", false
	}
	if w.fetched == 0 {
		w.fetched = time.Since(w.start)
	}
	w.req.Progress(fmt.Sprintf("%s: applied %s (%s after the request)", w.f.kustomization(), engine.ShortCommit(st.Applied), engine.Elapsed(time.Since(w.start))))
	return st.Applied, true
}

// failed returns an error when Flux tried a revision containing the commit and reports a
// failure for it: Ready=False with a reason other than Progressing, or Stalled.
func (w *waiter) failed(ctx context.Context, o *objects) error {
	st := o.state
	if stalled, reason, msg := condition(o.ks, "Stalled"); stalled == "True" {
		// Flux gave up on the object itself (an invalid spec): no revision will be applied.
		return fmt.Errorf("%w: %w: %s is stalled, Flux will not retry it: %s: %s",
			engine.ErrFailed, cluster.ErrRolloutFailed, w.f.kustomization(), reason, msg)
	}
	if st.Ready != "False" || st.Reason == "Progressing" {
		return nil
	}
	if !w.revisionContains(ctx, st.Attempted) {
		return nil
	}
	rev := engine.ShortCommit(st.Attempted)
	if st.Attempted != w.req.Commit {
		rev += ", which contains " + engine.ShortCommit(w.req.Commit)
	}
	return fmt.Errorf("%w: %w: %s failed to apply %s: %s: %s",
		engine.ErrFailed, cluster.ErrRolloutFailed, w.f.kustomization(), rev, st.Reason, st.Message)
}

// timedOut describes where the wait stood when its time ran out.
func (w *waiter) timedOut() error {
	if w.last == nil || w.readErr != nil && errors.Is(w.readErr, cluster.ErrUnreachable) {
		return fmt.Errorf("waiting for %s: the cluster stopped answering: %w", w.f, w.readErr)
	}
	st := w.last.state
	limit := w.req.Timeout
	var detail string
	switch {
	case w.fetched == 0:
		srcReady, srcReason, srcMsg := condition(w.last.src, "Ready")
		detail = fmt.Sprintf("%s did not fetch a revision containing %s within %s: it is at %s", st.Source, engine.ShortCommit(w.req.Commit), limit, orNone(engine.ShortCommit(st.Fetched)))
		if srcReady != "" && srcReady != "True" {
			detail += fmt.Sprintf(" (Ready=%s %s: %s)", srcReady, srcReason, srcMsg)
		}
		if w.undecided != nil {
			detail += fmt.Sprintf("; whether it contains the commit could not be decided: %v", w.undecided)
		}
	default:
		detail = fmt.Sprintf("%s did not apply a revision containing %s within %s: last applied %s, last attempted %s, Ready=%s %s: %s",
			w.f.kustomization(), engine.ShortCommit(w.req.Commit), limit, orNone(engine.ShortCommit(st.Applied)), orNone(engine.ShortCommit(st.Attempted)), orEmpty(st.Ready), st.Reason, st.Message)
	}
	return fmt.Errorf("%w: %s", cluster.ErrRolloutFailed, detail)
}

func orEmpty(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// condition returns the status, reason and message of u's condition typ ("" if it has none).
func condition(u *unstructured.Unstructured, typ string) (status, reason, message string) {
	if u == nil {
		return "", "", ""
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != typ {
			continue
		}
		status, _ = m["status"].(string)
		reason, _ = m["reason"].(string)
		message, _ = m["message"].(string)
		return status, reason, message
	}
	return "", "", ""
}

// readyFor reports whether the Ready condition's message does not name a revision other than
// rev: Flux writes status in several patches, and for a moment shows Ready=True "Applied
// revision: R" for a new R while lastAppliedRevision is still the previous one.
func readyFor(ks *unstructured.Unstructured, rev string) bool {
	_, _, msg := condition(ks, "Ready")
	named := revisionRE.FindStringSubmatch(msg)
	return named == nil || commitOf(named[1]) == rev
}

// revisionRE finds the revision a Flux condition message names, as in "Applied revision:
// main@sha1:<hex>" or "Building manifests for revision main@sha1:<hex> with a timeout of 30s".
var revisionRE = regexp.MustCompile(`revision:? '?(\S+?@sha1:[0-9a-f]{40}|sha1:[0-9a-f]{40})`)

// attempted is the revision the Kustomization last tried: lastAttemptedRevision, or, when a
// newer one failed before it was recorded there (a fetch that failed, ArtifactFailed), the one
// its Reconciling condition names.
func attempted(ks *unstructured.Unstructured) string {
	last, _, _ := unstructured.NestedString(ks.Object, "status", "lastAttemptedRevision")
	if rec, _, msg := condition(ks, "Reconciling"); rec == "True" {
		if m := revisionRE.FindStringSubmatch(msg); m != nil {
			return m[1]
		}
	}
	return last
}

// commitOf returns the commit hash of a Flux revision: "main@sha1:<hex>", "sha1:<hex>", or the
// older "main/<hex>" form; "" if there is none.
func commitOf(rev string) string {
	if rev == "" {
		return ""
	}
	if i := strings.LastIndex(rev, "@"); i >= 0 {
		rev = rev[i+1:]
	}
	if i := strings.LastIndex(rev, "/"); i >= 0 {
		rev = rev[i+1:]
	}
	rev = strings.TrimPrefix(rev, "sha1:")
	if len(rev) != 40 || strings.Trim(rev, "0123456789abcdef") != "" {
		return ""
	}
	return rev
}

// sourceBranch is the branch a GitRepository follows: spec.ref.branch, "master" by default.
func sourceBranch(src *unstructured.Unstructured) string {
	if b, _, _ := unstructured.NestedString(src.Object, "spec", "ref", "branch"); b != "" {
		return b
	}
	if name, _, _ := unstructured.NestedString(src.Object, "spec", "ref", "name"); strings.HasPrefix(name, "refs/heads/") {
		return strings.TrimPrefix(name, "refs/heads/")
	}
	if refOtherThanBranch(src) == "" {
		return "master"
	}
	return ""
}

// refOtherThanBranch describes what a GitRepository fetches when that is not a branch (a tag,
// a semver range, a commit, another ref), or "".
func refOtherThanBranch(src *unstructured.Unstructured) string {
	for _, field := range []string{"tag", "semver", "commit"} {
		if v, _, _ := unstructured.NestedString(src.Object, "spec", "ref", field); v != "" {
			return field + " " + v
		}
	}
	if name, _, _ := unstructured.NestedString(src.Object, "spec", "ref", "name"); name != "" && !strings.HasPrefix(name, "refs/heads/") {
		return "ref " + name
	}
	return ""
}

// suspendedBy names the field manager that set spec.suspend, and when, from u's managed
// fields: "kubectl-patch at 2026-11-30T10:00:00Z"; "" if none says.
func suspendedBy(u *unstructured.Unstructured) string {
	for _, mf := range u.GetManagedFields() {
		if mf.FieldsV1 == nil || mf.Subresource != "" {
			continue
		}
		var fields map[string]map[string]any
		if json.Unmarshal(mf.FieldsV1.GetRawBytes(), &fields) != nil {
			continue
		}
		if _, ok := fields["f:spec"]["f:suspend"]; !ok {
			continue
		}
		who := mf.Manager
		if mf.Time != nil {
			who += " at " + mf.Time.UTC().Format(time.RFC3339)
		}
		return who
	}
	return ""
}

// inventoryOf returns the objects a Kustomization's inventory lists.
func inventoryOf(ks *unstructured.Unstructured) ([]cluster.ObjectRef, error) {
	entries, _, _ := unstructured.NestedSlice(ks.Object, "status", "inventory", "entries")
	refs := make([]cluster.ObjectRef, 0, len(entries))
	for _, e := range entries {
		m, _ := e.(map[string]any)
		id, _ := m["id"].(string)
		version, _ := m["v"].(string)
		ref, err := parseInventoryID(id)
		if err != nil {
			return nil, err
		}
		ref.Version = version
		refs = append(refs, ref)
	}
	return refs, nil
}

// parseInventoryID parses an inventory entry's id, "<namespace>_<name>_<group>_<kind>" (the
// format of cli-utils' ObjMetadata, which Flux uses; a colon in an RBAC object's name is
// written "__").
func parseInventoryID(id string) (cluster.ObjectRef, error) {
	ns, rest, ok := strings.Cut(id, "_")
	i := strings.LastIndex(rest, "_")
	if !ok || i < 0 {
		return cluster.ObjectRef{}, fmt.Errorf("inventory entry %q is not namespace_name_group_kind", id)
	}
	kind := rest[i+1:]
	rest = rest[:i]
	j := strings.LastIndex(rest, "_")
	if j < 0 || kind == "" {
		return cluster.ObjectRef{}, fmt.Errorf("inventory entry %q is not namespace_name_group_kind", id)
	}
	group, name := rest[j+1:], strings.ReplaceAll(rest[:j], "__", ":")
	if name == "" || strings.Contains(name, "_") {
		return cluster.ObjectRef{}, fmt.Errorf("inventory entry %q is not namespace_name_group_kind", id)
	}
	return cluster.ObjectRef{Group: group, Kind: kind, Namespace: ns, Name: name}, nil
}

// sameRepo reports whether two clone URLs name the same repository: the same host and path,
// ignoring scheme, credentials, port, case of the host and a trailing ".git" or "/". An
// scp-like "git@host:path" counts as host and path.
func sameRepo(a, b string) bool {
	return repoKey(a) == repoKey(b)
}

func repoKey(raw string) string {
	host, p := "", raw
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		host, p = u.Hostname(), u.Path
	} else if at := strings.Index(raw, "@"); at >= 0 && strings.Contains(raw[at:], ":") {
		rest := raw[at+1:]
		host, p, _ = strings.Cut(rest, ":")
	}
	p = strings.TrimSuffix(strings.TrimSuffix(strings.Trim(p, "/"), ".git"), "/")
	return strings.ToLower(host) + "/" + p
}

// redactURL drops the user-info of a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = nil
	return u.String()
}

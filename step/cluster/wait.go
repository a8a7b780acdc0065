package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

const (
	defaultWaitTimeout  = 5 * time.Minute
	defaultWaitInterval = time.Second
	// progressEvery is the least time between two batches of progress lines.
	progressEvery = time.Second
	// reportTimeout bounds the requests that explain a failed rollout.
	reportTimeout = 15 * time.Second
	// maxPodsReported is how many not-ready pods a workload's failure lists.
	maxPodsReported = 5
)

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// WaitOptions control Wait.
type WaitOptions struct {
	// Timeout is how long to wait for all objects; default 5 minutes.
	Timeout time.Duration
	// Interval is the longest time between two polls; default 1 second. Wait watches the
	// objects that are not Current, and sees their changes as they happen; while every such
	// object is watched, polls are Interval apart, as a safety net. Otherwise (no watch
	// permission, for example) polls start 100ms apart and back off to Interval, so quick
	// rollouts are seen quickly.
	Interval time.Duration
	// Seen holds objects as last seen, such as the results of Apply (AppliedObject.Object).
	// Wait computes their status from these before reading anything, so objects that are
	// already Current (ConfigMaps, Services, unchanged workloads) are never read again.
	Seen []*unstructured.Unstructured
	// Progress, if set, receives a line such as "Deployment/demo/web: 1/2 ready"
	// whenever the state of an object that was not Current changes, in
	// batches at most once a second. Objects that are Current when first
	// seen are not reported.
	Progress func(line string)
}

// objState is what Wait knows about one object.
type objState struct {
	ref     ObjectRef
	mapping *meta.RESTMapping
	obj     *unstructured.Unstructured // last seen; nil if not found
	status  status.Status
	detail  string // "Reason: message" explaining status
	summary string // short state for progress lines
	current bool
	pending bool        // was seen not Current
	shown   string      // the last summary reported
	err     error       // from the last read
	watch   *watchGroup // the watch following the object; nil if none
}

// Wait waits until every one of objs is Current (kstatus), one Failed, or the
// timeout passed. It reads the objects that are not Current, then watches them
// (see startWatches) and evaluates their status on every change, polling them
// as well: often while they are not all watched, every opts.Interval while they
// are. Objects that are Current are neither watched nor polled again. A
// Deployment whose progress deadline was exceeded counts as Failed.
//
// On failure or timeout the error wraps ErrRolloutFailed and lists every
// object that is not Current with its status and reason; for Deployments,
// StatefulSets, DaemonSets, ReplicaSets and Jobs it adds the reasons of
// their pods that are not ready, such as
//
//	Deployment/demo/web: Failed: ProgressDeadlineExceeded: ReplicaSet "web-5d9c" has timed out progressing.; pod web-5d9c-x2x7p: Unschedulable: 0/1 nodes are available: ...
//
// Errors reading objects are retried until the timeout, except
// authorization errors and unknown kinds, which end the wait at once; a watch
// that fails, ends or is forbidden only leaves its objects to the polls. If
// the last read of every object that is not Current failed when the time ran
// out, the error wraps ErrUnreachable instead. If ctx ends, Wait returns its
// error.
func (c *Client) Wait(ctx context.Context, objs []ObjectRef, opts WaitOptions) error {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultWaitTimeout
	}
	if opts.Interval <= 0 {
		opts.Interval = defaultWaitInterval
	}
	ctx = quiet(ctx)
	states := make([]*objState, 0, len(objs))
	for _, ref := range objs {
		mapping, err := c.mapping(ctx, ref.GroupKind(), ref.Version)
		if err != nil {
			return classify(ctx, "waiting for "+ref.String(), err)
		}
		states = append(states, &objState{ref: ref, mapping: mapping, status: status.UnknownStatus, detail: "not read yet"})
	}
	seen := map[ObjectRef]*unstructured.Unstructured{}
	for _, u := range opts.Seen {
		if u != nil {
			seen[RefOf(u)] = u
		}
	}
	for _, st := range states {
		if u := seen[st.ref]; u != nil {
			st.fromObject(u)
			st.current = st.status == status.CurrentStatus
		}
	}
	wctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	// ws are the watches, started after the first poll; between polls, Wait evaluates the
	// objects again whenever they send something.
	var ws *watches
	defer func() { ws.stop() }()
	delay := firstPollDelay
	var lastReport, polled time.Time
	poll := true
	for {
		if poll {
			c.observeAll(wctx, states)
			polled = time.Now()
			// Then what the watches sent during the poll: it may be older than what the poll
			// read, but a watch sends every later change too, so each object ends up as its
			// watch last saw it.
			ws.drain()
		}
		failed, notCurrent := 0, 0
		for _, s := range states {
			if s.err != nil {
				if expired(wctx) {
					break
				}
				if errors.Is(s.err, ErrUnauthorized) || errors.Is(s.err, ErrInvalid) {
					return s.err
				}
				// Keep what was last seen; say why it could not be read if nothing was.
				if s.obj == nil && s.status != status.NotFoundStatus {
					s.status, s.detail, s.summary = status.UnknownStatus, s.err.Error(), "unknown: "+s.err.Error()
				}
			}
			switch s.status {
			case status.CurrentStatus:
				s.current = true
			case status.FailedStatus:
				failed++
			}
			if !s.current {
				s.pending = true
				notCurrent++
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for rollout: %w", ctx.Err())
		}
		if !expired(wctx) {
			if notCurrent == 0 {
				report(states, opts.Progress, &lastReport, true)
				return nil
			}
			report(states, opts.Progress, &lastReport, false)
			if failed > 0 {
				return c.rolloutError(ctx, states, 0)
			}
		}
		if ws == nil {
			ws = c.startWatches(wctx, states)
		}
		gap := delay
		if ws.covers(states) {
			gap = opts.Interval
		}
		next := time.NewTimer(time.Until(polled.Add(gap)))
		select {
		case <-wctx.Done():
			next.Stop()
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for rollout: %w", ctx.Err())
			}
			if err := unreachable(states); err != nil {
				// Not a failed rollout: nothing says the release is unhealthy, so nothing may
				// be reverted because of it.
				return err
			}
			return c.rolloutError(ctx, states, opts.Timeout)
		case <-next.C:
			poll = true
			delay = min(2*delay, opts.Interval)
		case m := <-ws.msgs:
			next.Stop()
			ws.handle(m)
			ws.drain()
			poll = false
		}
	}
}

// unreachable returns an error wrapping ErrUnreachable when the last read of every object that
// is not Current failed (refused, reset, or still hanging when the time ran out): the wait
// ended because the cluster stopped answering, and nothing says the rollout failed.
func unreachable(states []*objState) error {
	var last error
	for _, s := range states {
		if s.current {
			continue
		}
		if s.err == nil {
			return nil
		}
		last = s.err
	}
	if last == nil {
		return nil
	}
	if errors.Is(last, ErrUnreachable) {
		return fmt.Errorf("waiting for rollout: the cluster stopped answering: %w", last)
	}
	return fmt.Errorf("waiting for rollout: %w: the cluster stopped answering: %w", ErrUnreachable, last)
}

// expired reports whether ctx is done or its deadline has passed (client-go's
// rate limiter fails requests that would end after the deadline before the
// context itself expires).
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// firstPollDelay is the wait before the second poll; later ones double up to the interval.
const firstPollDelay = 100 * time.Millisecond

// readTimeout bounds one read while waiting, so a cluster that stops answering shows up as
// failed reads well before the wait's own deadline.
const readTimeout = 5 * time.Second

// observeAll reads every object that is not Current yet, at most applyWorkers at a time, and
// records each one's status (or the error reading it in s.err). Every object is read: one
// failed read neither stops nor cancels the others, and each error stays with its object.
func (c *Client) observeAll(ctx context.Context, states []*objState) {
	var g errgroup.Group
	g.SetLimit(applyWorkers)
	for _, s := range states {
		if s.current {
			continue
		}
		g.Go(func() error {
			rctx, cancel := context.WithTimeout(ctx, readTimeout)
			err := c.observe(rctx, s)
			cancel()
			if err != nil && expired(ctx) {
				// Cut short by the wait's own deadline: that says nothing about the cluster,
				// so the last read's outcome stands.
				return nil
			}
			s.err = err
			return nil // the error is the object's (s.err), not the group's
		})
	}
	_ = g.Wait() // every goroutine returns nil: the errors are in the states
}

// observe reads the object of s and computes its status.
func (c *Client) observe(ctx context.Context, s *objState) error {
	u, err := c.resource(s.mapping, s.ref.Namespace).Get(ctx, s.ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.notFound()
		return nil
	}
	if err != nil {
		return classify(ctx, "reading "+s.ref.String(), err)
	}
	s.fromObject(u)
	return nil
}

// notFound records that the object does not exist.
func (s *objState) notFound() {
	s.obj, s.status, s.detail, s.summary = nil, status.NotFoundStatus, "not found", "not found"
}

// fromObject records u as the object last seen and computes its status.
func (s *objState) fromObject(u *unstructured.Unstructured) {
	s.obj = u
	res, err := status.Compute(u)
	if err != nil {
		s.status, s.detail, s.summary = status.UnknownStatus, err.Error(), "unknown: "+err.Error()
		return
	}
	s.status, s.detail = res.Status, explain(res)
	s.summary = summarize(u, res)
}

// explain returns "Reason: message" of a kstatus result's first condition,
// or its message.
func explain(res *status.Result) string {
	if len(res.Conditions) > 0 {
		c := res.Conditions[0]
		switch {
		case c.Reason != "" && c.Message != "":
			return c.Reason + ": " + trimMessage(c.Message)
		case c.Reason != "":
			return c.Reason
		case c.Message != "":
			return trimMessage(c.Message)
		}
	}
	return trimMessage(res.Message)
}

// summarize returns a short state for progress lines: replica counts for
// workloads, the kstatus status and reason otherwise.
func summarize(u *unstructured.Unstructured, res *status.Result) string {
	gk := u.GroupVersionKind().GroupKind()
	num := func(fields ...string) int64 {
		v, _, _ := unstructured.NestedInt64(u.Object, fields...)
		return v
	}
	desired := func() int64 {
		if v, ok, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); ok {
			return v
		}
		return 1
	}
	var counts string
	switch {
	case gk == (schema.GroupKind{Group: "apps", Kind: "Deployment"}):
		want, updated, total := desired(), num("status", "updatedReplicas"), num("status", "replicas")
		switch {
		case res.Status == status.CurrentStatus || updated >= want && total <= updated:
			counts = fmt.Sprintf("%d/%d ready", num("status", "readyReplicas"), want)
		case updated < want:
			counts = fmt.Sprintf("%d/%d updated", updated, want)
		default:
			counts = fmt.Sprintf("%d old replica(s) terminating", total-updated)
		}
	case gk == (schema.GroupKind{Group: "apps", Kind: "StatefulSet"}), gk == (schema.GroupKind{Group: "apps", Kind: "ReplicaSet"}):
		counts = fmt.Sprintf("%d/%d ready", num("status", "readyReplicas"), desired())
	case gk == (schema.GroupKind{Group: "apps", Kind: "DaemonSet"}):
		counts = fmt.Sprintf("%d/%d ready", num("status", "numberReady"), num("status", "desiredNumberScheduled"))
	}
	switch {
	case res.Status == status.CurrentStatus && counts != "":
		return counts
	case res.Status == status.CurrentStatus:
		return "Current"
	case res.Status == status.InProgressStatus && counts != "":
		return counts
	}
	if d := explain(res); d != "" {
		return string(res.Status) + ": " + d
	}
	return string(res.Status)
}

// report sends the changed summaries of objects that were not Current to
// progress, unless the last batch was less than progressEvery ago and
// force is false.
func report(states []*objState, progress func(string), last *time.Time, force bool) {
	if progress == nil || (!force && time.Since(*last) < progressEvery) {
		return
	}
	sent := false
	for _, s := range states {
		if !s.pending || s.summary == s.shown {
			continue
		}
		progress(s.ref.String() + ": " + s.summary)
		s.shown = s.summary
		sent = true
	}
	if sent {
		*last = time.Now()
	}
}

// rolloutError returns an error wrapping ErrRolloutFailed that lists every
// object that is not Current, with the reasons of its pods; timeout is the
// wait's timeout if it expired, 0 if objects failed.
func (c *Client) rolloutError(ctx context.Context, states []*objState, timeout time.Duration) error {
	rctx, cancel := context.WithTimeout(ctx, reportTimeout)
	defer cancel()
	var lines []string
	failed := 0
	for _, s := range states {
		if s.current {
			continue
		}
		if s.status == status.FailedStatus {
			failed++
		}
		line := s.ref.String() + ": " + string(s.status)
		if s.detail != "" {
			line += ": " + s.detail
		}
		for _, p := range c.podProblems(rctx, s.obj) {
			line += "; " + p
		}
		lines = append(lines, line)
	}
	headline := fmt.Sprintf("%d of %d object(s) failed", failed, len(states))
	if timeout > 0 {
		headline = fmt.Sprintf("timed out after %s with %d of %d object(s) not Current", timeout, len(lines), len(states))
	}
	return fmt.Errorf("%w: %s:\n  %s", ErrRolloutFailed, headline, strings.Join(lines, "\n  "))
}

// podProblems explains why the pods of workload u are not ready; nil if u
// is not a workload or its pods cannot be listed.
func (c *Client) podProblems(ctx context.Context, u *unstructured.Unstructured) []string {
	if u == nil {
		return nil
	}
	switch u.GroupVersionKind().GroupKind() {
	case schema.GroupKind{Group: "apps", Kind: "Deployment"}, schema.GroupKind{Group: "apps", Kind: "StatefulSet"},
		schema.GroupKind{Group: "apps", Kind: "DaemonSet"}, schema.GroupKind{Group: "apps", Kind: "ReplicaSet"},
		schema.GroupKind{Group: "batch", Kind: "Job"}:
	default:
		return nil
	}
	raw, ok, _ := unstructured.NestedMap(u.Object, "spec", "selector")
	if !ok {
		return nil
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &ls); err != nil {
		return nil
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil || sel.Empty() {
		return nil
	}
	list, err := c.dynamic.Resource(podsGVR).Namespace(u.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return []string{"listing pods: " + err.Error()}
	}
	var out []string
	more := 0
	for i := range list.Items {
		var pod corev1.Pod
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(list.Items[i].Object, &pod); err != nil {
			continue
		}
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || podReady(&pod) {
			continue
		}
		if len(out) == maxPodsReported {
			more++
			continue
		}
		out = append(out, "pod "+pod.Name+": "+strings.Join(podReasons(&pod), "; "))
	}
	if more > 0 {
		out = append(out, fmt.Sprintf("%d more pod(s) not ready", more))
	}
	return out
}

// podReady reports whether pod's Ready condition is True.
func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podReasons explains why pod is not ready: scheduling failures, waiting
// and failed containers, else its Ready condition or phase.
func podReasons(pod *corev1.Pod) []string {
	var r []string
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			r = append(r, joinNonEmpty(c.Reason, trimMessage(c.Message)))
		}
	}
	statuses := append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" &&
			cs.State.Waiting.Reason != "ContainerCreating" && cs.State.Waiting.Reason != "PodInitializing":
			r = append(r, "container "+cs.Name+": "+joinNonEmpty(cs.State.Waiting.Reason, trimMessage(cs.State.Waiting.Message)))
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode != 0:
			t := cs.State.Terminated
			r = append(r, fmt.Sprintf("container %s: %s (exit code %d)", cs.Name, joinNonEmpty(t.Reason, trimMessage(t.Message)), t.ExitCode))
		}
	}
	if len(r) > 0 {
		return r
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && (c.Reason != "" || c.Message != "") {
			return []string{"not ready: " + joinNonEmpty(c.Reason, trimMessage(c.Message))}
		}
	}
	return []string{"not ready (phase " + string(pod.Status.Phase) + ")"}
}

// joinNonEmpty joins the non-empty parts with ": ".
func joinNonEmpty(parts ...string) string {
	var l []string
	for _, p := range parts {
		if p != "" {
			l = append(l, p)
		}
	}
	return strings.Join(l, ": ")
}

// trimMessage removes surrounding space and a final period from a status
// message, so that messages can be joined with "; ".
func trimMessage(m string) string {
	return strings.TrimSuffix(strings.TrimSpace(m), ".")
}

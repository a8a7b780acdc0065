package cluster

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	watchtools "k8s.io/client-go/tools/watch"
)

// maxWatches bounds the watches one Wait opens; objects of further collections are only
// polled.
const maxWatches = 16

// watches are the watches of one Wait: one per collection of the objects that were not
// Current when they started. Each reports the objects' changes as they happen, so Wait sees
// the end of a rollout at once rather than at its next poll. Only Wait's loop touches the
// objects' states: the watches send it messages. A watch that cannot be opened (no watch
// permission, an API that does not serve watches, an unreachable cluster) or that ends only
// leaves its objects to the polls.
type watches struct {
	groups []*watchGroup
	msgs   chan watchMsg
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// watchGroup is the objects of one collection that a watch follows.
type watchGroup struct {
	col     collection
	states  map[string][]*objState // by name
	spec    watchSpec
	running bool // the watch is open (or being resumed) and has not ended
}

// watchSpec says how to watch a group: its selectors, and the resourceVersion to watch from
// ("" to list the group first and watch from the list's).
type watchSpec struct {
	ri       dynamic.ResourceInterface
	selector metav1.ListOptions // FieldSelector and LabelSelector only
	from     string
}

// watchMsg is what a group's watch tells Wait's loop.
type watchMsg struct {
	g    *watchGroup
	kind watchMsgKind
	obj  *unstructured.Unstructured // with watchObject and watchDeleted
}

// watchMsgKind is the kind of a watchMsg.
type watchMsgKind int

const (
	watchStarted watchMsgKind = iota // the watch is open
	watchEnded                       // the watch ended for good
	watchObject                      // obj was listed, added or modified
	watchDeleted                     // obj was deleted
)

// startWatches starts a watch for the objects of states that are not Current, grouped by
// collection (at most maxWatches collections). A group of one object is watched by name
// (fieldSelector metadata.name) from the resourceVersion it was last seen at; a larger group
// is listed and then watched from the list's resourceVersion, with the ApplySet label
// selector when its objects, as last seen, share one, else its whole collection. The watches
// run until stop, or ctx ends.
func (c *Client) startWatches(ctx context.Context, states []*objState) *watches {
	ctx, cancel := context.WithCancel(ctx)
	w := &watches{msgs: make(chan watchMsg, 16), cancel: cancel}
	byCol := map[collection]*watchGroup{}
	for _, s := range states {
		if s.current {
			continue
		}
		col := collectionOf(s.mapping, s.ref.Namespace)
		g := byCol[col]
		if g == nil {
			if len(w.groups) == maxWatches {
				continue
			}
			g = &watchGroup{col: col, states: map[string][]*objState{}, spec: watchSpec{ri: c.resource(s.mapping, s.ref.Namespace)}}
			byCol[col] = g
			w.groups = append(w.groups, g)
		}
		g.states[s.ref.Name] = append(g.states[s.ref.Name], s)
		s.watch = g
	}
	for _, g := range w.groups {
		g.plan()
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.run(ctx, g)
		}()
	}
	return w
}

// plan sets g.spec's selectors and starting resourceVersion from its objects as last seen.
func (g *watchGroup) plan() {
	if len(g.states) == 1 {
		for name, states := range g.states {
			g.spec.selector.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			for _, s := range states {
				if s.obj != nil && s.obj.GetResourceVersion() != "" {
					g.spec.from = s.obj.GetResourceVersion()
					break
				}
			}
		}
		return
	}
	label := ""
	for _, states := range g.states {
		for _, s := range states {
			id := ""
			if s.obj != nil {
				id = s.obj.GetLabels()[LabelPartOf]
			}
			if id == "" || (label != "" && id != label) {
				return // no common label: watch the whole collection
			}
			label = id
		}
	}
	g.spec.selector.LabelSelector = LabelPartOf + "=" + label
}

// run watches g until ctx ends or the watch ends for good (its resourceVersion expired, or it
// is forbidden), sending what it sees. It resumes a watch that closes from the last
// resourceVersion seen (watchtools.RetryWatcher).
func (w *watches) run(ctx context.Context, g *watchGroup) {
	spec := g.spec
	defer w.send(ctx, watchMsg{g: g, kind: watchEnded})
	from := spec.from
	if from == "" {
		lctx, cancel := context.WithTimeout(ctx, readTimeout)
		list, err := spec.ri.List(lctx, spec.selector)
		cancel()
		if err != nil {
			return
		}
		for i := range list.Items {
			if !w.send(ctx, watchMsg{g: g, kind: watchObject, obj: &list.Items[i]}) {
				return
			}
		}
		from = list.GetResourceVersion()
	}
	opts := spec.selector
	opts.ResourceVersion, opts.AllowWatchBookmarks = from, true
	first, err := spec.ri.Watch(ctx, opts)
	if err != nil {
		return
	}
	r := &resumer{first: first, spec: spec}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, from, r)
	if err != nil {
		first.Stop()
		return
	}
	defer func() {
		rw.Stop()
		<-rw.Done()
		if r.first != nil {
			r.first.Stop() // never handed to rw
		}
	}()
	if !w.send(ctx, watchMsg{g: g, kind: watchStarted}) {
		return
	}
	for ev := range rw.ResultChan() {
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			continue // an error: rw resumes the watch, or ends it
		}
		kind := watchObject
		switch ev.Type {
		case watch.Added, watch.Modified:
		case watch.Deleted:
			kind = watchDeleted
		default:
			continue
		}
		if !w.send(ctx, watchMsg{g: g, kind: kind, obj: u}) {
			return
		}
	}
}

// send passes m to Wait's loop; false if ctx ended first.
func (w *watches) send(ctx context.Context, m watchMsg) bool {
	select {
	case w.msgs <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

// resumer opens the watches of a RetryWatcher: first the one run opened already (so that run
// knows the watch is allowed and served), then new ones with the group's selectors.
type resumer struct {
	first watch.Interface // nil once handed out
	spec  watchSpec
}

// WatchWithContext implements cache.WatcherWithContext.
func (r *resumer) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	if first := r.first; first != nil {
		r.first = nil
		return first, nil
	}
	opts.FieldSelector, opts.LabelSelector = r.spec.selector.FieldSelector, r.spec.selector.LabelSelector
	return r.spec.ri.Watch(ctx, opts)
}

// handle records m in the objects' states. An object seen by a watch was read: the error of
// its last poll no longer stands.
func (w *watches) handle(m watchMsg) {
	switch m.kind {
	case watchStarted:
		m.g.running = true
	case watchEnded:
		m.g.running = false
	case watchObject, watchDeleted:
		for _, s := range m.g.states[m.obj.GetName()] {
			if s.current {
				continue
			}
			s.err = nil
			if m.kind == watchDeleted {
				s.notFound()
			} else {
				s.fromObject(m.obj)
			}
		}
	}
}

// drain handles the messages waiting, without blocking. A nil w has none.
func (w *watches) drain() {
	if w == nil {
		return
	}
	for {
		select {
		case m := <-w.msgs:
			w.handle(m)
		default:
			return
		}
	}
}

// covers reports whether every object of states that is not Current is followed by a running
// watch. A nil w covers nothing.
func (w *watches) covers(states []*objState) bool {
	if w == nil {
		return false
	}
	for _, s := range states {
		if !s.current && (s.watch == nil || !s.watch.running) {
			return false
		}
	}
	return true
}

// stop ends the watches and waits for them. A nil w has none.
func (w *watches) stop() {
	if w == nil {
		return
	}
	w.cancel()
	w.wg.Wait()
}

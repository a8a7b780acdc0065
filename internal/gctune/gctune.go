// Package gctune sets the Go garbage collector for a deliver run.
//
// A run lives for a fraction of a second to a few minutes and, in most runs, keeps a few
// megabytes live. With the runtime's defaults (GOGC=100, a 4 MiB minimum goal) such a heap is
// collected 7 or 8 times in a plain deploy and about 60 times in a run that lands 30 queued
// changes: about a fifth of the run's CPU (BENCHMARKS.md F4). So, while the live heap is
// small, the collector lets the heap grow to five times the live heap (GOGC=400), kept under a
// soft limit of SmallLimit; once a collection finds more than SmallLive live, or more than
// half of SmallLimit that no collection can free (the live heap and the runtime's memory
// outside the heap), the settings found at start come back (the defaults: GOGC=100, no
// limit), so that a run that needs a large heap (a large apply) is never held at the soft
// limit by a collector running all the time. The price is memory: a run's heap may reach
// SmallLimit before the defaults return, where the defaults would have kept it near twice
// the live heap (P4's 1 000-object apply peaks at about 90 MB of RSS instead of 75 MB).
//
// A GOGC or GOMEMLIMIT in the environment is the user's choice: Set then changes nothing.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// Settings while the live heap is small, and the size at which the defaults come back.
const (
	SmallPercent = 400
	SmallLimit   = 64 << 20
	SmallLive    = 16 << 20
)

// Set applies the small-heap settings unless getenv has GOGC or GOMEMLIMIT set. It returns
// whether it did, and a function that restores the settings it found (for tests; a run
// does not call it).
func Set(getenv func(string) string) (set bool, restore func()) {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return false, func() {}
	}
	t := &tuner{}
	t.percent = debug.SetGCPercent(SmallPercent)
	t.limit = debug.SetMemoryLimit(SmallLimit)
	t.watch()
	return true, t.restore
}

// tuner watches the live heap after each collection until it passes SmallLive.
type tuner struct {
	mu      sync.Mutex
	done    bool // the defaults are back, or restore ran
	percent int  // the settings Set found
	limit   int64
}

// watch arms a check that runs after the next collection: a finalizer on a new object, which
// the next collection finds unreachable. The check arms the next one while the heap stays
// small.
func (t *tuner) watch() {
	sentinel := new([16]byte)
	runtime.SetFinalizer(sentinel, func(*[16]byte) { t.check() })
}

func (t *tuner) check() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return
	}
	if live, kept := memory(); live > SmallLive || kept > SmallLimit/2 {
		debug.SetGCPercent(t.percent)
		debug.SetMemoryLimit(t.limit)
		t.done = true
		return
	}
	t.watch()
}

// restore puts back the settings Set found and stops the watch.
func (t *tuner) restore() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = true
	debug.SetGCPercent(t.percent)
	debug.SetMemoryLimit(t.limit)
}

// memory reads the heap the last collection found live (what GOGC scales), and that plus the
// runtime's memory outside the heap (stacks, its own structures): what the soft limit counts
// that no collection can free. Near the limit, the collector would run all the time.
func memory() (live, kept uint64) {
	s := []metrics.Sample{
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/total:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}
	metrics.Read(s)
	v := make([]uint64, len(s))
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	heap := v[2] + v[3] + v[4] + v[5]
	return v[0], v[0] + v[1] - min(heap, v[1])
}

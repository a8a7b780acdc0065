// Package gctune sets the Go garbage collector for a deliver run.
//
// A run lives for a fraction of a second to a few minutes and, in most runs, keeps a few
// megabytes live. With the runtime's defaults (GOGC=100, a 4 MiB minimum goal) such a heap is
// collected 7 or 8 times in a plain deploy and about 60 times in a run that lands 30 queued
// changes: about a fifth of the run's CPU (BENCHMARKS.md F4). So, while the live heap is
// small, the collector lets the heap grow to five times the live heap (GOGC=400), kept under a
// soft limit of SmallLimit; once a collection finds more than SmallLive live, the defaults
// come back (GOGC=100, no limit), so a run that needs a large heap (a large apply) uses no more
// memory than it did, and is never held at the soft limit by a collector running all the
// time.
//
// A GOGC or GOMEMLIMIT in the environment is the user's choice: Set then changes nothing.
package gctune

import (
	"math"
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
	if liveHeap() > SmallLive {
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
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

// liveHeap is the heap the last collection found live (the runtime/metrics measure GOGC
// scales).
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

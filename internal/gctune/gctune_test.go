package gctune_test

import (
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/gctune"
)

// settings reads the collector's settings without changing them.
func settings() (percent uint64, limit int64) {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), debug.SetMemoryLimit(-1)
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestUserSettingsWin(t *testing.T) {
	for _, vars := range []map[string]string{{"GOGC": "50"}, {"GOMEMLIMIT": "1GiB"}, {"GOGC": "off", "GOMEMLIMIT": "300MiB"}} {
		p0, l0 := settings()
		set, restore := gctune.Set(env(vars))
		p, l := settings()
		restore()
		if set || p != p0 || l != l0 {
			t.Errorf("with %v: Set changed the collector (set %v; GOGC %d -> %d, limit %d -> %d)", vars, set, p0, p, l0, l)
		}
	}
}

// TestSmallHeapThenDefaults: the small-heap settings hold through collections that find
// little live, and give way to the defaults at the first that finds more than SmallLive.
func TestSmallHeapThenDefaults(t *testing.T) {
	p0, l0 := settings()
	set, restore := gctune.Set(env(nil))
	defer func() {
		restore()
		if p, l := settings(); p != p0 || l != l0 {
			t.Errorf("restore left GOGC %d, limit %d; want %d, %d", p, l, p0, l0)
		}
	}()
	if !set {
		t.Fatal("Set did nothing without GOGC or GOMEMLIMIT")
	}
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // the check runs as a finalizer, after the collection
		if p, l := settings(); p != gctune.SmallPercent || l != gctune.SmallLimit {
			t.Fatalf("with a small heap: GOGC %d, limit %d; want %d, %d", p, l, gctune.SmallPercent, gctune.SmallLimit)
		}
	}
	big := make([]byte, 2*gctune.SmallLive)
	for i := range big {
		big[i] = byte(i)
	}
	waitForDefaults(t, fmt.Sprintf("with %d MiB live", len(big)>>20))
	runtime.KeepAlive(big)
}

// waitForDefaults collects until the defaults are back (GOGC=100, no limit), for up to 5 s.
func waitForDefaults(t *testing.T, with string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // the check runs as a finalizer, after the collection
		p, l := settings()
		if p == 100 && l == math.MaxInt64 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOGC %d, limit %d; want the defaults (100, no limit)", with, p, l)
		}
	}
}

// TestMemoryOutsideTheHeap: memory no collection frees that is not heap (here goroutine
// stacks) counts too: near the soft limit the defaults come back, though the live heap is
// small.
func TestMemoryOutsideTheHeap(t *testing.T) {
	_, restore := gctune.Set(env(nil))
	defer restore()
	release := make(chan struct{})
	var wg sync.WaitGroup
	for range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deepStack(1000, release) // about 128 KiB of stack each
		}()
	}
	defer func() { close(release); wg.Wait() }()
	waitForDefaults(t, "with ~37 MiB of stacks")
}

// deepStack recurses n times, each frame holding 128 bytes, then waits for release.
func deepStack(n int, release chan struct{}) byte {
	var pad [128]byte
	if n == 0 {
		<-release
		return pad[0]
	}
	pad[n%128] = byte(n)
	return deepStack(n-1, release) + pad[(n+1)%128]
}

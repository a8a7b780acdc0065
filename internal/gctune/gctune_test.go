package gctune_test

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
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
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		p, l := settings()
		if p == 100 && l == math.MaxInt64 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with %d MiB live: GOGC %d, limit %d; want the defaults (100, no limit)", len(big)>>20, p, l)
		}
	}
	runtime.KeepAlive(big)
}

package configrepo

import (
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
)

// TestHeaderSafe: a name or e-mail from CI can never break the commit header.
func TestHeaderSafe(t *testing.T) {
	t.Parallel()
	for in, want := range map[object.Signature]object.Signature{
		{Name: "Ada\nLovelace", Email: "ada@example.com"}:      {Name: "AdaLovelace", Email: "ada@example.com"},
		{Name: "Eve <eve@evil>", Email: "<eve@example.com>\r"}: {Name: "Eve eve@evil", Email: "eve@example.com"},
		{Name: "plain", Email: "p@example.com"}:                {Name: "plain", Email: "p@example.com"},
		{Name: "nul\x00", Email: " x@example.com "}:            {Name: "nul", Email: "x@example.com"},
	} {
		if got := headerSafe(in); got != want {
			t.Errorf("headerSafe(%q, %q) = %q, %q", in.Name, in.Email, got.Name, got.Email)
		}
	}
}

// TestPollCap: the sleep between reads of the queue grows with how many runs wait, how long
// they have waited and what a read costs, within its bounds; pollDelay keeps to it.
func TestPollCap(t *testing.T) {
	for _, c := range []struct {
		waiting      int
		waited, cost time.Duration
		want         time.Duration
	}{
		{1, 100 * time.Millisecond, minPollCost, minPollCap},
		{7, time.Second, 8 * time.Millisecond, minPollCap},
		// √(30 × 3 s × 16 ms) / 2 = 600 ms
		{30, 3 * time.Second, 16 * time.Millisecond, 600 * time.Millisecond},
		// √(60 × 10 s × 15 ms) / 2 = 1.5 s
		{60, 10 * time.Second, 15 * time.Millisecond, 1500 * time.Millisecond},
		{200, time.Minute, 100 * time.Millisecond, maxPollCap},
	} {
		got := pollCap(c.waiting, c.waited, c.cost)
		if d := got - c.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("pollCap(%d, %s, %s) = %s, want %s", c.waiting, c.waited, c.cost, got, c.want)
		}
		for prev := time.Duration(0); prev < 10*time.Second; prev = prev*2 + time.Millisecond {
			if d := pollDelay(prev, c.waiting, got); d > got*5/4 {
				t.Errorf("pollDelay(%s, %d, %s) = %s, over the cap and its jitter", prev, c.waiting, got, d)
			}
		}
	}
}

// TestParseHash: a commit id reaches go-git only as a full id; a short or mangled one is an
// error, not a silently different hash.
func TestParseHash(t *testing.T) {
	t.Parallel()
	full := "0123456789abcdef0123456789abcdef01234567"
	if h, err := parseHash(full); err != nil || h.String() != full {
		t.Errorf("parseHash(%q) = %s, %v", full, h, err)
	}
	for _, bad := range []string{"", "0123456", full + "8", "g123456789abcdef0123456789abcdef01234567", " " + full[1:]} {
		if h, err := parseHash(bad); err == nil {
			t.Errorf("parseHash(%q) = %s, want an error", bad, h)
		}
	}
}

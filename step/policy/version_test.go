package policy_test

import (
	"testing"

	"github.com/deliverhq/deliver/step/policy"
)

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want int // -1: a sorts before b, 0: equal, 1: after
		ok   bool
	}{
		{"1.2.3", "1.2.4", -1, true},
		{"1.10.0", "1.9.0", 1, true},
		{"2.0.0", "10.0.0", -1, true},
		// Pre-releases: before their release, numeric identifiers compare as numbers.
		{"1.2.3-rc.10", "1.2.3-rc.2", 1, true},
		{"1.2.3-rc.2", "1.2.3-rc.10", -1, true},
		{"1.2.3-rc.1", "1.2.3", -1, true},
		{"1.2.3-alpha", "1.2.3-beta", -1, true},
		{"1.2.3-alpha.1", "1.2.3-alpha", 1, true},
		{"1.2.3-rc.1", "1.2.2", 1, true},
		// Build metadata does not order.
		{"1.2.3+build-5", "1.2.3", 0, true},
		{"1.2.3", "1.2.3+build-5", 0, true},
		{"1.2.3+build.5", "1.2.3+build.6", 0, true},
		// A "v" prefix is tolerated, on either side; MAJOR.MINOR is MAJOR.MINOR.0.
		{"v1.2.3", "1.2.3", 0, true},
		{"v1.2.3", "v1.2.10", -1, true},
		{"1.2", "1.2.0", 0, true},
		{"v2.1", "2.0.9", 1, true},
		// Not versions: unknown.
		{"latest", "1.2.3", 0, false},
		{"1.2.3", "main", 0, false},
		{"3f9c2ab", "1.0.0", 0, false},
		{"1234567", "1.0.0", 0, false}, // a commit hash that is all digits, or a build number
		{"42", "43", 0, false},
		{"1.2.3.4", "1.2.3", 0, false},
		{"1.2.3-", "1.2.3", 0, false},
		{"", "1.2.3", 0, false},
		{" 1.2.3", "1.2.3", 0, false},
		{"V1.2.3", "1.2.3", 0, false},
		{"1.2-rc.1", "1.2.0", 0, false},
	}
	for _, tt := range tests {
		got, ok := policy.CompareVersions(tt.a, tt.b)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want %d, %v", tt.a, tt.b, got, ok, tt.want, tt.ok)
		}
	}
}

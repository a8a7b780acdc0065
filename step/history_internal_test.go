package step

import (
	"testing"

	"github.com/deliverhq/deliver/step/release"
)

// TestPreviousRelease: the release rollback goes back to, from an environment's history
// (newest first).
func TestPreviousRelease(t *testing.T) {
	t.Parallel()
	ch := func(action, from, to string) entry {
		return entry{Record: release.Record{Action: action, Images: []release.ImageChange{{Name: "web", From: from, To: to}}}}
	}
	other := entry{Record: release.Record{Action: release.ActionDeploy, Images: []release.ImageChange{{Name: "api", From: "a:1", To: "a:2"}}}}
	tests := []struct {
		name    string
		entries []entry
		current string
		want    string
	}{
		{"no history", nil, "w:3", ""},
		{"the deploy before", []entry{ch("deploy", "w:2", "w:3"), ch("deploy", "w:1", "w:2")}, "w:3", "w:2"},
		{"the first deploy's From predates deliver", []entry{ch("deploy", "w:1", "w:2")}, "w:2", "w:1"},
		{"a first deploy that added the entry", []entry{ch("deploy", "", "w:1")}, "w:1", ""},
		{"other images do not count", []entry{other, ch("deploy", "w:2", "w:3"), other}, "w:3", "w:2"},
		{"promotions are releases", []entry{ch("promote", "w:2", "w:3")}, "w:3", "w:2"},
		{"records before trailers had an action", []entry{ch("", "w:2", "w:3")}, "w:3", "w:2"},
		{"a rolled-back release is skipped", []entry{ch("rollback", "w:3", "w:2"), ch("deploy", "w:2", "w:3"), ch("deploy", "w:1", "w:2")}, "w:2", "w:1"},
		{"a reverted release is skipped", []entry{ch("revert", "w:3", "w:2"), ch("deploy", "w:2", "w:3"), ch("deploy", "w:1", "w:2")}, "w:2", "w:1"},
		{"locks and unlocks are not releases", []entry{ch("lock", "", ""), ch("deploy", "w:2", "w:3")}, "w:3", "w:2"},
		{"the current release is never the previous one", []entry{ch("deploy", "w:3", "w:3"), ch("deploy", "w:2", "w:3")}, "w:3", "w:2"},
	}
	for _, tt := range tests {
		if got := previousRelease(tt.entries, "web", tt.current); got != tt.want {
			t.Errorf("%s: previousRelease = %q, want %q", tt.name, got, tt.want)
		}
	}
}

package release

import (
	"testing"
	"time"
)

func TestPrevious(t *testing.T) {
	t.Parallel()
	deploy := func(from, to string) Entry {
		return Entry{Record: Record{Action: ActionDeploy, Environment: "staging", Images: []ImageChange{{Name: "web", From: from, To: to}}}}
	}
	rollback := func(from, to string) Entry {
		e := deploy(from, to)
		e.Action = ActionRollback
		return e
	}
	revert := func(from, to string) Entry {
		e := deploy(from, to)
		e.Action = ActionRevert
		return e
	}
	for _, tt := range []struct {
		name    string
		entries []Entry // newest first
		current string
		want    string
	}{
		{name: "the deploy before", entries: []Entry{deploy("r:1", "r:2"), deploy("r:0", "r:1")}, current: "r:2", want: "r:1"},
		{name: "the first deploy's from predates deliver", entries: []Entry{deploy("r:0", "r:1")}, current: "r:1", want: "r:0"},
		{name: "nothing before", entries: []Entry{deploy("", "r:1")}, current: "r:1", want: ""},
		{name: "no history", current: "r:1", want: ""},
		{name: "a rolled-back release is skipped", entries: []Entry{rollback("r:3", "r:2"), deploy("r:2", "r:3"), deploy("r:1", "r:2")}, current: "r:2", want: "r:1"},
		{name: "a reverted release is skipped", entries: []Entry{revert("r:3", "r:2"), deploy("r:2", "r:3"), deploy("r:1", "r:2")}, current: "r:2", want: "r:1"},
		{name: "other images are ignored", entries: []Entry{{Record: Record{Action: ActionDeploy, Images: []ImageChange{{Name: "api", From: "a:1", To: "a:2"}}}}, deploy("r:1", "r:2")}, current: "r:2", want: "r:1"},
		{name: "locks are not releases", entries: []Entry{{Record: Record{Action: ActionLock, Images: []ImageChange{{Name: "web"}}}}, deploy("r:1", "r:2")}, current: "r:2", want: "r:1"},
	} {
		if got := Previous(tt.entries, "web", tt.current); got != tt.want {
			t.Errorf("%s: Previous = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestFromCommit(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	msg := Record{Action: ActionDeploy, Environment: "staging", Images: []ImageChange{{Name: "web", From: "r:1", To: "r:2"}}, Trigger: "manual"}.Message()
	e, ok := FromCommit("abc", msg, "Ada", when)
	if !ok || e.Commit != "abc" || e.Author != "Ada" || !e.Time.Equal(when) || e.Environment != "staging" || len(e.Images) != 1 {
		t.Fatalf("FromCommit = %+v, %v", e, ok)
	}
	if _, ok := FromCommit("def", "a commit by hand\n", "Bob", when); ok {
		t.Error("a commit without deliver trailers read as a record")
	}
}

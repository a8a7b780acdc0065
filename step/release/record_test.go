package release

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	records := []Record{
		{
			Action: ActionDeploy, Environment: "staging",
			Images: []ImageChange{
				{Name: "web", From: "registry.example.com/team/web:1.4.2@sha256:" + strings.Repeat("a", 64), To: "registry.example.com/team/web:1.4.3@sha256:" + strings.Repeat("b", 64)},
				{Name: "api", To: "localhost:5000/api:2.0"},
			},
			Trigger: "automated", Event: "push",
			SourceRepo: "https://gitlab.example.com/team/web", SourceCommit: "abc123", Pipeline: "https://gitlab.example.com/team/web/-/pipelines/42",
			Actor: "Ada Lovelace",
		},
		{Action: ActionLock, Environment: "production", Images: []ImageChange{{Name: "web", To: "registry.example.com/team/web:1.4.1"}}, Trigger: "manual", Event: "cli", Reason: "incident 42", Actor: "ops"},
		{Action: ActionRevert, Environment: "production", Images: []ImageChange{{Name: "web", From: "r/web:2", To: "r/web:1"}}, Trigger: "automated", Reverts: "0123abcd", Forced: true},
	}
	for _, want := range records {
		msg := want.Message()
		got, err := Parse(msg)
		if err != nil {
			t.Fatalf("Parse(%q): %v", msg, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of\n%s\ngot  %+v\nwant %+v", msg, got, want)
		}
	}
}

func TestSubject(t *testing.T) {
	t.Parallel()
	r := Record{Action: ActionDeploy, Environment: "staging", Images: []ImageChange{{Name: "web", From: "r.example/team/web:1.4.2@sha256:" + strings.Repeat("1", 64), To: "r.example/team/web:1.4.3@sha256:" + strings.Repeat("2", 64)}}}
	if got, want := r.Subject(), "deliver(staging): web 1.4.2 -> 1.4.3"; got != want {
		t.Errorf("Subject() = %q, want %q", got, want)
	}
	r.Images[0].To = "localhost:5000/web@sha256:" + strings.Repeat("c", 64)
	if got, want := r.Subject(), "deliver(staging): web 1.4.2 -> cccccccccccc"; got != want {
		t.Errorf("Subject() = %q, want %q", got, want)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	if _, err := Parse("fix typo\n\nSigned-off-by: x"); !errors.Is(err, ErrNotRecord) {
		t.Errorf("plain commit: err = %v, want ErrNotRecord", err)
	}
	if _, err := Parse("x\n\nDeliver-Environment: a\nDeliver-Image: broken"); err == nil {
		t.Error("malformed image trailer parsed")
	}
}

func TestValuesCannotForgeTrailers(t *testing.T) {
	t.Parallel()
	r := Record{Environment: "staging", Reason: "x\nDeliver-Environment: production", Images: []ImageChange{{Name: "web", To: "r/web:1"}}}
	got, err := Parse(r.Message())
	if err != nil {
		t.Fatal(err)
	}
	if got.Environment != "staging" {
		t.Errorf("environment forged to %q", got.Environment)
	}
}

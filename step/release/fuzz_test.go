package release_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/step/release"
)

// clean is how Message keeps every value on one line: whitespace runs become one space,
// leading and trailing whitespace goes.
func clean(s string) string { return strings.Join(strings.Fields(s), " ") }

// FuzzParse: for records with arbitrary field values, Parse(r.Message()) gives r back, once
// each value is in the one-line form Message writes (see clean); an empty action reads back
// as deploy and a record without an environment is not a record. Image names must not hold
// "=" (the trailer's separator; kustomize image names never do) and are unique (so are a
// kustomization's). Whatever the values, Parse never panics and every field it returns is a
// single line.
func FuzzParse(f *testing.F) {
	f.Add("deploy", "staging", uint8(2), "web", "reg.example.com/team/web:1.4.2", "reg.example.com/team/web:1.4.3@sha256:"+strings.Repeat("a", 64),
		"api", "", "localhost:5000/api:2", "automated", "push", "https://gitlab.example.com/team/web", "0123abc",
		"https://gitlab.example.com/team/web/-/pipelines/42", "Ada Lovelace", false, "", "")
	f.Add("revert", "production", uint8(1), "web", "r/web:2", "r/web:1", "", "", "", "manual", "web", "", "", "", "ops", true, "rollout failed", "0123abcd")
	f.Add("", "prod\nDeliver-Environment: staging", uint8(1), "web", "a\n\nDeliver-Action: lock", " b ", "", "", "", "", "", "", "", "", "", false, "line one\n\nDeliver-Forced: true", "")
	f.Add("lock", "", uint8(0), "", "", "", "", "", "", "", "", "", "", "", "", false, "", "")
	f.Add("deploy", "s", uint8(2), "a", "x\u00a0y", "\u2028", "b", "\r\n", "é\xff", "auto", "\t", "", "", "", "", false, "Deliver-Reason: forged", "")
	f.Fuzz(func(t *testing.T, action, env string, n uint8, name1, from1, to1, name2, from2, to2, trigger, event, srcRepo, srcCommit,
		pipeline, actor string, forced bool, reason, reverts string) {
		raw := release.Record{
			Action: action, Environment: env, Trigger: trigger, Event: event, SourceRepo: srcRepo, SourceCommit: srcCommit,
			Pipeline: pipeline, Actor: actor, Forced: forced, Reason: reason, Reverts: reverts,
		}
		pairs := [][3]string{{name1, from1, to1}, {name2, from2, to2}}
		for i := 0; i < int(n%3); i++ {
			raw.Images = append(raw.Images, release.ImageChange{Name: pairs[i][0], From: pairs[i][1], To: pairs[i][2]})
		}
		// Any record: Parse does not panic and returns one-line values.
		msg := raw.Message()
		got, err := release.Parse(msg)
		if err == nil {
			for _, v := range []string{got.Action, got.Environment, got.Trigger, got.Event, got.SourceRepo, got.SourceCommit, got.Pipeline, got.Actor, got.Reason, got.Reverts} {
				if strings.ContainsAny(v, "\r\n") {
					t.Fatalf("Parse returned a value spanning lines: %q\nmessage:\n%s", v, msg)
				}
			}
		}

		// The record in the form Message writes.
		want := release.Record{
			Action: clean(action), Environment: clean(env), Trigger: clean(trigger), Event: clean(event), SourceRepo: clean(srcRepo),
			SourceCommit: clean(srcCommit), Pipeline: clean(pipeline), Actor: clean(actor), Forced: forced, Reason: clean(reason), Reverts: clean(reverts),
		}
		seen := map[string]bool{}
		for _, im := range raw.Images {
			c := release.ImageChange{Name: clean(im.Name), From: clean(im.From), To: clean(im.To)}
			if strings.Contains(c.Name, "=") || seen[c.Name] {
				return // not representable; see the doc comment
			}
			seen[c.Name] = true
			want.Images = append(want.Images, c)
		}
		msg = want.Message()
		got, err = release.Parse(msg)
		if want.Environment == "" {
			if !errors.Is(err, release.ErrNotRecord) {
				t.Fatalf("a record without an environment parsed: %+v, %v\nmessage:\n%s", got, err, msg)
			}
			return
		}
		if want.Action == "" {
			want.Action = release.ActionDeploy
		}
		if err != nil {
			t.Fatalf("Parse(Message()) of %+v: %v\nmessage:\n%s", want, err, msg)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %#v\nwant %#v\nmessage:\n%s", got, want, msg)
		}
	})
}

// FuzzParseMessage: Parse never panics on any commit message, accepts only messages with a
// Deliver-Environment trailer (possibly empty: the seed empty-environment), and returns
// one-line values.
func FuzzParseMessage(f *testing.F) {
	f.Add("deliver(staging): web 1 -> 2\n\nDeliver-Action: deploy\nDeliver-Environment: staging\nDeliver-Image: web=r/web:2\nDeliver-Previous: web=r/web:1\n")
	f.Add("Deliver-Environment: x\r\nDeliver-Image: web\r\n")
	f.Add("fix typo\n\nSigned-off-by: Ada <ada@example.com>\n")
	f.Add("\n\n\n")
	f.Fuzz(func(t *testing.T, msg string) {
		r, err := release.Parse(msg)
		if err != nil {
			return
		}
		if !strings.Contains(msg, "Deliver-Environment: ") {
			t.Fatalf("Parse accepted a message without a Deliver-Environment trailer: %+v", r)
		}
		for _, v := range []string{r.Action, r.Environment, r.Trigger, r.Event, r.SourceRepo, r.SourceCommit, r.Pipeline, r.Actor, r.Reason, r.Reverts} {
			if strings.Contains(v, "\n") {
				t.Fatalf("Parse returned a value spanning lines: %q", v)
			}
		}
		for _, im := range r.Images {
			if strings.ContainsAny(im.Name+im.From+im.To, "\n") {
				t.Fatalf("an image change spans lines: %+v", im)
			}
		}
	})
}

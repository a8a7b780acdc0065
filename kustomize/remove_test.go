package kustomize

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
)

// TestRevertRoundTrip is what a revert does with an entry an edit changed: the edit sets
// the image deliver verified (dropping tagSuffix, as kustomize does), and setting the
// entry's previous values back, tagSuffix included, restores it. Where the edit only
// replaced values, removed trailing keys or added keys, the file comes back byte for
// byte; a tagSuffix that stood before other keys comes back as the last key, and a
// comment on its line does not come back.
func TestRevertRoundTrip(t *testing.T) {
	t.Parallel()
	deploy := types.Image{Name: "web", NewName: "reg.example.com/team/web", NewTag: "v2", Digest: digestB}
	tests := []struct {
		name string
		in   string
		want string // "" means the input itself
	}{
		{name: "tag replaced, digest added", in: "images:\n  - name: web\n    newName: reg.example.com/team/web\n    newTag: \"1.0\" # pinned\n  - name: api\n"},
		{name: "newName and digest added", in: "images:\n- name: web\n  newTag: v1\n"},
		{name: "digest replaced", in: "images: [{name: web, newName: reg.example.com/team/web, newTag: v1, digest: " + digestA + "}]\n"},
		{name: "tagSuffix last", in: "images:\n  - name: web\n    newTag: v1\n    tagSuffix: -alpine\n"},
		{name: "crlf, tagSuffix last, no final newline", in: "images:\r\n- name: web\r\n  newTag: v1\r\n  tagSuffix: -alpine"},
		{
			name: "tagSuffix before other keys",
			in:   "images:\n  - name: web\n    tagSuffix: -alpine\n    newTag: v1\n",
			want: "images:\n  - name: web\n    newTag: v1\n    tagSuffix: -alpine\n",
		},
		{
			name: "a comment on the tagSuffix line",
			in:   "images:\n  - name: web\n    tagSuffix: -alpine # variant\n",
			want: "images:\n  - name: web\n    tagSuffix: -alpine\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before, err := parseSource([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			prev := before.entryNamed("web").image
			mid, changed, err := EditImages([]byte(tt.in), []types.Image{deploy})
			if err != nil || !changed {
				t.Fatalf("deploy edit: changed=%v, %v", changed, err)
			}
			if s, _ := parseSource(mid); s.entryNamed("web").image != deploy {
				t.Fatalf("after the deploy edit web reads %+v, want %+v (tagSuffix dropped)\n%s", s.entryNamed("web").image, deploy, mid)
			}
			back, _, err := EditImages(mid, []types.Image{prev})
			if err != nil {
				t.Fatalf("revert edit: %v", err)
			}
			want := tt.want
			if want == "" {
				want = tt.in
			}
			if string(back) != want {
				t.Errorf("after the revert (-want +got):\n%s", lineDiff(want, string(back)))
			}
			if s, _ := parseSource(back); s.entryNamed("web").image != prev {
				t.Errorf("after the revert web reads %+v, want %+v", s.entryNamed("web").image, prev)
			}
		})
	}
}

func TestRemoveEntriesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		names    []string
		want     string
		invalid  bool
	}{
		{name: "invalid name", in: "images:\n- name: web\n", names: []string{"Web\nx"}, want: "name", invalid: true},
		{name: "keep is not a name", in: "images:\n- name: web\n", names: []string{"*"}, want: `"*"`, invalid: true},
		{name: "yaml error", in: "images: [\n", names: []string{"web"}, want: "parsing YAML"},
		{name: "block scalar in the entry", in: "images:\n- name: web\n  note: |\n    x\n- name: api\n", names: []string{"web"}, want: "block scalars"},
		{name: "entry not on its dash line", in: "images:\n-\n  name: web\n- name: api\n", names: []string{"web"}, want: "not on its \"- \" line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := RemoveEntries([]byte(tt.in), tt.names)
			var fe *FileError
			if err == nil || !errors.As(err, &fe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RemoveEntries = %v, want a *FileError containing %q", err, tt.want)
			}
			if errors.Is(err, ErrInvalidImage) != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalidImage) = %v, want %v", !tt.invalid, tt.invalid)
			}
		})
	}
}

// FuzzRemoveImages: RemoveEntries never panics; when it succeeds, the output parses, the
// entry is gone, every other entry and key reads as before, and removing it again changes
// nothing. And adding an entry with EditImages and removing it again gives back the input
// byte for byte, when the input had no images key or a list with entries (an empty
// "images:" or "images: []" is filled by the add, and the removal then takes the key).
func FuzzRemoveImages(f *testing.F) {
	seeds := []string{
		"images:\n- name: web\n  newTag: v1\n- name: api\n",
		"images: [{name: web}, {name: api, newTag: '1'}]\n",
		"resources:\n  - ../../base\nnamespace: x",
		"",
		"---\n",
		"\uFEFFimages:\n- name: web\n",
	}
	for i, s := range seeds {
		f.Add([]byte(s), []string{"web", "api"}[i%2])
	}
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		if checkName(name) != nil {
			name = "web"
		}
		out, changed, err := RemoveEntries(data, []string{name})
		before, after, ok := checkEdit(t, data, out, changed, err)
		if !ok {
			return
		}
		if after.entryNamed(name) != nil {
			t.Fatalf("entry %q is still there\n%q", name, out)
		}
		var others []*entry
		for _, e := range before.entries {
			if e.image.Name != name {
				others = append(others, e)
			}
		}
		if len(others) != len(after.entries) {
			t.Fatalf("%d entries left, want %d\n%q", len(after.entries), len(others), out)
		}
		for i, e := range after.entries {
			if e.image != others[i].image || !sameNode(e.node, others[i].node) {
				t.Fatalf("entry %q changed\n%q", others[i].image.Name, out)
			}
		}
		if !sameExcept(before.root, after.root, []string{"images"}) {
			t.Fatalf("a key other than images changed\n%q", out)
		}
		again, changed, err := RemoveEntries(out, []string{name})
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("the removal is not idempotent: changed=%v err=%v", changed, err)
		}

		const added = "zz-fuzz-added"
		if before.entryNamed(added) != nil || (before.images != nil && len(before.entries) == 0) {
			return
		}
		with, changed, err := EditImages(data, []types.Image{{Name: added, NewName: "reg.example.com/x", NewTag: "v1", Digest: digestA}})
		if err != nil || !changed {
			return // layouts EditImages refuses are its own fuzz target's business
		}
		back, _, err := RemoveEntries(with, []string{added})
		if err != nil {
			t.Fatalf("removing the entry EditImages added: %v\n%q", err, with)
		}
		if !bytes.Equal(back, data) {
			t.Fatalf("add then remove does not give the input back:\n%q\n%q\n%q", data, with, back)
		}
	})
}

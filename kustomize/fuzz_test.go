package kustomize

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
)

// fuzzChanges are used when the fuzzed argument does not parse, so that every input
// still exercises the editor with a meaningful change.
var fuzzChanges = []types.Image{
	{Name: "web", NewTag: "v2"},
	{Name: "web", NewTag: "1.10"},
	{Name: "web", NewName: Keep, NewTag: Keep, Digest: digestA},
	{Name: "web", NewName: "reg.example.com/web", NewTag: "2", Digest: digestB},
	{Name: "web"},
	{Name: "api", NewName: "localhost:5000/api", NewTag: "true"},
	{Name: "web", NewName: Keep, Digest: digestA},
	{Name: "web", NewName: Keep, NewTag: Keep, Digest: Keep, TagSuffix: Keep},
	{Name: "web", NewTag: "v1", TagSuffix: "-alpine"},
}

// FuzzEditImages: EditImages never panics; when it succeeds, the output parses, the
// entry for the image holds exactly the requested values (no tagSuffix unless the change
// sets or keeps one), nothing else in the file changed meaning, and the same edit again
// changes nothing.
func FuzzEditImages(f *testing.F) {
	seeds := []string{
		"images:\n- name: web\n  newTag: v1\n",
		"resources:\n  - ../../base\nimages:\n  - name: web # c\n    newName: a/web\n    newTag: \"1.0\"\n  - name: api\n",
		"images: [{name: web, newTag: '1'}, {name: api}]\n",
		"images:\r\n  - newTag: v1\r\n    name: web\r\n",
		"---\nimages: []\nnamespace: x",
		"images:\n- name: web\n  newTag: v1",
		"namespace: x\n",
		"",
	}
	for _, name := range []string{"comments", "flow-sequence", "crlf", "key-order", "numeric-tags-quoted", "null-field"} {
		if data, err := os.ReadFile(filepath.Join(goldenDir, name, "kustomization.yaml")); err == nil {
			seeds = append(seeds, string(data))
		}
	}
	for i, s := range seeds {
		f.Add([]byte(s), []string{"web:v2", "web=*@" + digestA, "web", "api=reg/api:1.10", "web=*:*@*"}[i%5])
	}
	f.Fuzz(func(t *testing.T, data []byte, arg string) {
		img, err := ParseImageArg(arg)
		if err != nil {
			img = fuzzChanges[len(arg)%len(fuzzChanges)]
		}
		out, changed, err := EditImages(data, []types.Image{img})
		before, after, ok := checkEdit(t, data, out, changed, err)
		if !ok {
			return
		}
		var have types.Image
		if e := before.entryNamed(img.Name); e != nil {
			have = e.image
		}
		want := resolveKeep(img, have)
		got := after.entryNamed(img.Name)
		if got == nil || got.image != want {
			t.Fatalf("re-read entry %+v, want %+v\n%q", got, want, out)
		}
		// Every other entry is unchanged, in the same order.
		var others []*entry
		for _, e := range after.entries {
			if e.image.Name != img.Name {
				others = append(others, e)
			}
		}
		i := 0
		for _, e := range before.entries {
			if e.image.Name == img.Name {
				continue
			}
			if i >= len(others) || others[i].image != e.image || !sameNode(others[i].node, e.node) {
				t.Fatalf("entry %q changed\n%q", e.image.Name, out)
			}
			i++
		}
		if i != len(others) {
			t.Fatalf("extra entries appeared")
		}
		if !sameExcept(before.root, after.root, []string{"images"}) {
			t.Fatalf("a key other than images changed\n%q", out)
		}
		again, changed, err := EditImages(out, []types.Image{img})
		if err != nil || changed || !bytes.Equal(again, out) {
			t.Fatalf("the edit is not idempotent: changed=%v err=%v\n%q\n%q", changed, err, out, again)
		}
	})
}

// checkEdit checks the result of a fuzzed edit of data: an error must be a *FileError
// other than an internal one (then ok is false); otherwise the input and output must
// parse, and be the same bytes when nothing changed.
func checkEdit(t *testing.T, data, out []byte, changed bool, err error) (before, after *source, ok bool) {
	t.Helper()
	if err != nil {
		var fe *FileError
		if !errors.As(err, &fe) {
			t.Fatalf("error %v is not a *FileError", err)
		}
		if strings.Contains(err.Error(), "internal error") {
			t.Fatalf("internal error (the editor produced a file that did not check out): %v", err)
		}
		return nil, nil, false
	}
	if !changed && !bytes.Equal(out, data) {
		t.Fatalf("changed=false but the output differs")
	}
	if before, err = parseSource(data); err != nil {
		t.Fatalf("the editor accepted input that does not parse: %v", err)
	}
	if after, err = parseSource(out); err != nil {
		t.Fatalf("the output does not parse: %v\n%q", err, out)
	}
	return before, after, true
}

// FuzzParseImageArg: ParseImageArg never panics; what it accepts is valid, free of
// anything but reference characters, and formats back to the same image.
func FuzzParseImageArg(f *testing.F) {
	for _, s := range []string{
		"web=reg.example.com/web:1.2@" + digestA, "web:1.2", "web@" + digestA, "web=*:*@*",
		"localhost:5000/team/web:1.2", "web=localhost:5000/web", "web:1;rm", "a=b=c", "web:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		img, err := ParseImageArg(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidImage) {
				t.Fatalf("error %v does not wrap ErrInvalidImage", err)
			}
			return
		}
		if err := ValidateImage(img); err != nil {
			t.Fatalf("ParseImageArg(%q) = %+v, which ValidateImage refuses: %v", s, img, err)
		}
		for _, r := range s {
			if !isArgRune(r) {
				t.Fatalf("ParseImageArg(%q) accepted %q", s, r)
			}
		}
		if strings.Contains(s, Keep) {
			return
		}
		ref := FormatImage(img)
		again := ref
		if img.NewName != "" {
			again = img.Name + "=" + ref
		}
		back, err := ParseImageArg(again)
		if err != nil || back != img {
			t.Fatalf("ParseImageArg(%q) = %+v; formatted %q parses to %+v, %v", s, img, again, back, err)
		}
	})
}

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

// TestEditImagesBytes covers layouts the golden files do not: positions after
// multi-byte characters, a byte order mark, tabs, several edits in one entry.
func TestEditImagesBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     string
		images []types.Image
		want   string
	}{
		{
			name:   "multi-byte characters before the value on the same line",
			in:     "images: [{note: \"é🙂\", name: web, newTag: v1}]\n",
			images: []types.Image{{Name: "web", NewTag: "v2"}},
			want:   "images: [{note: \"é🙂\", name: web, newTag: v2}]\n",
		},
		{
			name:   "byte order mark",
			in:     "\uFEFFimages: [{name: web, newTag: v1}]\n",
			images: []types.Image{{Name: "web", NewTag: "v2"}},
			want:   "\uFEFFimages: [{name: web, newTag: v2}]\n",
		},
		{
			name:   "byte order mark, images added",
			in:     "\uFEFFnamespace: x\n",
			images: []types.Image{{Name: "web", NewTag: "v2"}},
			want:   "\uFEFFnamespace: x\nimages:\n  - name: web\n    newTag: v2\n",
		},
		{
			name:   "tab before an inline comment",
			in:     "images:\n- name: web\n  newTag: v1\t# tab\n",
			images: []types.Image{{Name: "web", NewTag: "v2", Digest: digestA}},
			want:   "images:\n- name: web\n  newTag: v2\t# tab\n  digest: " + digestA + "\n",
		},
		{
			name:   "flow entry loses a middle key and gains one",
			in:     "images: [{name: web, newName: a/web, newTag: v1}]\n",
			images: []types.Image{{Name: "web", NewName: "", NewTag: "*", Digest: digestA}},
			want:   "images: [{name: web, newTag: v1, digest: " + digestA + "}]\n",
		},
		{
			name:   "flow entry loses its first key",
			in:     "images: [{newTag: v1, name: web}]\n",
			images: []types.Image{{Name: "web", Digest: digestA}},
			want:   "images: [{name: web, digest: " + digestA + "}]\n",
		},
		{
			name:   "every field removed",
			in:     "images:\n  - name: web\n    newName: a/web\n    newTag: v1 # x\n    digest: " + digestA + "\n  - name: api\n",
			images: []types.Image{{Name: "web"}},
			want:   "images:\n  - name: web\n  - name: api\n",
		},
		{
			name:   "removing the last line of a file without a final newline",
			in:     "images:\n  - name: web\n    newTag: v1",
			images: []types.Image{{Name: "web"}},
			want:   "images:\n  - name: web",
		},
		{
			name:   "removing the last line of a CRLF file without a final newline",
			in:     "images:\r\n  - name: web\r\n    newTag: v1",
			images: []types.Image{{Name: "web"}},
			want:   "images:\r\n  - name: web",
		},
		{
			name:   "an unknown key after the managed ones keeps its place",
			in:     "images:\n  - name: web\n    newTag: v1\n    extra: {a: [1, 2]}  # c\nx: 1\n",
			images: []types.Image{{Name: "web", NewTag: "v2", Digest: digestA}},
			want:   "images:\n  - name: web\n    newTag: v2\n    extra: {a: [1, 2]}  # c\n    digest: " + digestA + "\nx: 1\n",
		},
		{
			name:   "empty file",
			in:     "",
			images: []types.Image{{Name: "web", NewTag: "v1"}},
			want:   "images:\n  - name: web\n    newTag: v1\n",
		},
		{
			name:   "comments only",
			in:     "# nothing yet\n",
			images: []types.Image{{Name: "web", NewTag: "v1"}},
			want:   "# nothing yet\nimages:\n  - name: web\n    newTag: v1\n",
		},
		{
			name:   "a name that YAML reads as a boolean is quoted",
			in:     "images: []\n",
			images: []types.Image{{Name: "true", NewTag: "v1"}, {Name: "n", NewName: "reg/no", NewTag: "y"}},
			want:   "images:\n  - name: \"true\"\n    newTag: v1\n  - name: \"n\"\n    newName: reg/no\n    newTag: \"y\"\n",
		},
		{
			name:   "new entry copies single quotes from its neighbour",
			in:     "images:\n- name: 'a'\n  newTag: 'v1'\n",
			images: []types.Image{{Name: "b", NewTag: "v2"}},
			want:   "images:\n- name: 'a'\n  newTag: 'v1'\n- name: 'b'\n  newTag: 'v2'\n",
		},
		{
			name:   "JSON-style quoted keys",
			in:     "\"images\": [ {\"name\": \"web\", \"newTag\": \"v1\"} ]\n",
			images: []types.Image{{Name: "web", NewTag: "v2", Digest: digestA}, {Name: "api", NewTag: "1"}},
			want:   "\"images\": [ {\"name\": \"web\", \"newTag\": \"v2\", \"digest\": " + digestA + "}, {\"name\": \"api\", \"newTag\": \"1\"} ]\n",
		},
		{
			name:   "multi-line double-quoted value replaced",
			in:     "images:\n- name: web\n  newTag: \"multi\n    line\"\n",
			images: []types.Image{{Name: "web", NewTag: "v2"}},
			want:   "images:\n- name: web\n  newTag: \"v2\"\n",
		},
		{
			name:   "comment between the dash and the first key",
			in:     "images:\n- # c\n  name: web\n",
			images: []types.Image{{Name: "api", NewTag: "v1"}},
			want:   "images:\n- # c\n  name: web\n- name: api\n  newTag: v1\n",
		},
		{
			name:   "indented top-level mapping",
			in:     "  a: 1\n",
			images: []types.Image{{Name: "api", NewTag: "v1"}},
			want:   "  a: 1\n  images:\n    - name: api\n      newTag: v1\n",
		},
		{
			name:   "keys on the line after the dash",
			in:     "images:\n  -\n    name: a\n    newTag: v1\n",
			images: []types.Image{{Name: "b", NewTag: "v2"}},
			want:   "images:\n  -\n    name: a\n    newTag: v1\n  - name: b\n    newTag: v2\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, changed, err := EditImages([]byte(tt.in), tt.images)
			if err != nil {
				t.Fatalf("EditImages: %v", err)
			}
			if string(out) != tt.want {
				t.Fatalf("EditImages (-want +got):\n%s", lineDiff(tt.want, string(out)))
			}
			if changed != (tt.in != tt.want) {
				t.Errorf("changed = %v", changed)
			}
			again, changed, err := EditImages(out, tt.images)
			if err != nil || changed || !bytes.Equal(again, out) {
				t.Errorf("second EditImages = %v, %v; want no change", changed, err)
			}
		})
	}
}

func TestEditImagesErrors(t *testing.T) {
	t.Parallel()
	web := []types.Image{{Name: "web", NewTag: "v2"}}
	tests := []struct {
		name     string
		in       string
		images   []types.Image
		wantLine int
		wantMsg  string
		wantIs   error
	}{
		{"tag with a newline", "images: []\n", []types.Image{{Name: "web", NewTag: "v1\nx: y"}}, 0, "must match", ErrInvalidImage},
		{"tag with a quote", "images: []\n", []types.Image{{Name: "web", NewTag: `v1"`}}, 0, "must match", ErrInvalidImage},
		{"digest with a space", "images: []\n", []types.Image{{Name: "web", Digest: "sha256: x"}}, 0, "digest", ErrInvalidImage},
		{"name with a colon tag", "images: []\n", []types.Image{{Name: "web:1", NewTag: "v1"}}, 0, "must not include a tag", ErrInvalidImage},
		{"empty name", "images: []\n", []types.Image{{NewTag: "v1"}}, 0, "name is empty", ErrInvalidImage},
		{"two changes for one name", "images: []\n", []types.Image{{Name: "web", NewTag: "1"}, {Name: "web", NewTag: "2"}}, 0, `two changes for image "web"`, nil},
		{"lone carriage return", "a: 1\rimages: []\n", web, 1, "carriage return", nil},
		{"unicode line separator", "a: 1\nb: \"x\u2028\"\n", web, 2, "line or paragraph separator", nil},
		{"not UTF-8", "a: \xff\n", web, 0, "not UTF-8", nil},
		{"NUL byte", "a: 1\n\x00", web, 2, "NUL", nil},
		{"multi-line plain value", "images:\n  - name: web\n    newTag: v1\n      continued\n", web, 3, "several lines", nil},
		{"tagged non-string value", "images:\n  - name: web\n    newTag: !!int 12\n", web, 3, "explicit tag !!int", nil},
		{"tagged null value", "images:\n  - name: web\n    newTag: !!null ~\n", web, 3, "explicit tag !!null", nil},
		{"merge key at the top", "base: &b {namespace: x}\n<<: *b\n", web, 2, "merge keys", nil},
		{"duplicate images key", "images: []\nimages: []\n", web, 2, "duplicate key images", nil},
		{"document end marker", "namespace: x\n...\n", web, 0, "document end marker", nil},
		{"flow top-level mapping", "{images: []}\n", web, 1, "flow-style", nil},
		{"scalar document", "hello\n", web, 1, "the document is a string, not a mapping", nil},
		{"duplicate key in an entry", "images:\n  - name: web\n    newTag: a\n    newTag: b\n", web, 4, "duplicate key newTag", nil},
		{"non-string field", "images:\n  - name: web\n    newTag: [a]\n", web, 3, "images[0].newTag: must be a string, found a list", nil},
		{"anchored entry", "images:\n  - &w\n    name: web\n", web, 2, "anchors and aliases", nil},
		{"aliased list", "x: &l []\nimages: *l\n", web, 2, "anchors and aliases", nil},
		{"too large", "a: " + strings.Repeat("x", maxFileSize) + "\n", web, 0, "larger than", nil},
		{"explicit key", "? namespace\n: x\n", web, 1, "explicit keys", nil},
		{"explicit key on the next line", "?\n 0A0\n", web, 2, "explicit keys", nil},
		{"explicit key on the next line after a byte order mark", "\uFEFF?\n 0A0\n", web, 2, "explicit keys", nil},
		{"explicit key after a comment", "? # the key\n\n  # more\n  namespace\n: x\n", web, 4, "explicit keys", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, changed, err := EditImages([]byte(tt.in), tt.images)
			if err == nil {
				t.Fatalf("EditImages succeeded (changed=%v):\n%s", changed, out)
			}
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FileError", err, err)
			}
			if fe.Line != tt.wantLine {
				t.Errorf("line = %d, want %d (%v)", fe.Line, tt.wantLine, err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tt.wantMsg)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v does not wrap %v", err, tt.wantIs)
			}
			if out != nil || changed {
				t.Errorf("EditImages returned output with an error")
			}
		})
	}
}

func TestFileErrorMessage(t *testing.T) {
	t.Parallel()
	inner := errors.New(`images[1]: duplicate image name "web"`)
	tests := []struct {
		err  *FileError
		want string
	}{
		{&FileError{Path: "overlays/staging/kustomization.yaml", Line: 12, Err: inner}, `overlays/staging/kustomization.yaml:12: images[1]: duplicate image name "web"`},
		{&FileError{Path: "overlays/staging/kustomization.yaml", Err: inner}, `overlays/staging/kustomization.yaml: images[1]: duplicate image name "web"`},
		{&FileError{Line: 3, Err: inner}, `line 3: images[1]: duplicate image name "web"`},
		{&FileError{Err: inner}, `images[1]: duplicate image name "web"`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, inner) {
			t.Errorf("FileError does not unwrap")
		}
	}
}

func TestNeedsQuotes(t *testing.T) {
	t.Parallel()
	quoted := []string{"", "1234", "1.10", "3.2e2", "1e5", "0x1F", "012", "0o17", "0b101", "1_000", ".5",
		"true", "False", "yes", "No", "on", "OFF", "y", "N", "null", "Null", "~", "2024-01-02", "1:20", "+1", "-1"}
	plain := []string{"v1", "1.2.3", "latest", "1.0-rc1", "sha256:" + strings.Repeat("a", 64), "reg.example.com/web",
		"localhost:5000/web", "web", "_x", "1a", "nope", "yes-please", "v1.10"}
	for _, s := range quoted {
		if !needsQuotes(s) {
			t.Errorf("needsQuotes(%q) = false, want true", s)
		}
	}
	for _, s := range plain {
		if needsQuotes(s) {
			t.Errorf("needsQuotes(%q) = true, want false", s)
		}
	}
}

func TestReadImages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"kustomization.yml": "images:\n" +
		"  - name: web\n    newName: reg/web\n    newTag: \"1.0\"\n    digest: " + digestA + "\n" +
		"  - name: api\n    newTag: 1.10\n    tagSuffix: -x\n" +
		"  - name: db\n    newTag:\n    newName: ~\n"})
	path, got, err := ReadImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	if path != filepath.Join(dir, "kustomization.yml") {
		t.Errorf("path = %q", path)
	}
	want := []types.Image{
		{Name: "web", NewName: "reg/web", NewTag: "1.0", Digest: digestA},
		{Name: "api", NewTag: "1.10", TagSuffix: "-x"},
		{Name: "db"},
	}
	if len(got) != len(want) {
		t.Fatalf("ReadImages = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("images[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}

	empty := t.TempDir()
	writeFiles(t, empty, map[string]string{"kustomization.yaml": "namespace: x\n"})
	if _, got, err := ReadImages(empty); err != nil || got == nil || len(got) != 0 {
		t.Errorf("ReadImages without images = %v, %v; want an empty list", got, err)
	}
}

func TestFindKustomization(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := FindKustomization(missing); !errors.Is(err, ErrNoKustomization) {
		t.Errorf("missing directory: %v, want ErrNoKustomization", err)
	}

	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"real.yaml": "images: []\n"})
	if err := os.Symlink("real.yaml", filepath.Join(dir, "kustomization.yaml")); err != nil {
		t.Fatal(err)
	}
	_, err := FindKustomization(dir)
	var fe *FileError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "symlink") || errors.Is(err, ErrNoKustomization) {
		t.Errorf("symlinked kustomization: %v", err)
	}

	sub := t.TempDir()
	if err := os.Mkdir(filepath.Join(sub, "Kustomization"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := FindKustomization(sub); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory named Kustomization: %v", err)
	}
}

func TestSetImagesWritesAtomicallyAndKeepsMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "kustomization.yaml")
	if err := os.WriteFile(path, []byte("images:\n- name: web\n  newTag: v1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil { // umask-proof
		t.Fatal(err)
	}
	changed, err := SetImages(dir, []types.Image{{Name: "web", NewTag: "v2"}})
	if err != nil || !changed {
		t.Fatalf("SetImages = %v, %v", changed, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after the write, want only the kustomization file (temporary file left?)", len(entries))
	}
	got, _ := os.ReadFile(path)
	if string(got) != "images:\n- name: web\n  newTag: v2\n" {
		t.Errorf("file = %q", got)
	}
}

func TestSetImagesRefusesLargeFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "kustomization.yaml")
	big := "images: []\n# " + strings.Repeat("x", maxFileSize) + "\n"
	if err := os.WriteFile(path, []byte(big), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := SetImages(dir, []types.Image{{Name: "web", NewTag: "v1"}})
	if err == nil || !strings.Contains(err.Error(), "larger than") || !strings.Contains(err.Error(), path) {
		t.Fatalf("SetImages on a large file: %v", err)
	}
	if _, _, err := ReadImages(dir); err == nil {
		t.Errorf("ReadImages on a large file succeeded")
	}
	got, _ := os.ReadFile(path)
	if string(got) != big {
		t.Errorf("the file was modified")
	}
}

func TestSetImagesErrorNamesPathAndLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"kustomization.yaml": "images:\n  - name: web\n  - name: web\n"})
	_, err := SetImages(dir, []types.Image{{Name: "api", NewTag: "v1"}})
	want := filepath.Join(dir, "kustomization.yaml") + `:3: images[1]: duplicate image name "web" (also images[0])`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
	var fe *FileError
	if !errors.As(err, &fe) || fe.Line != 3 || fe.Path != filepath.Join(dir, "kustomization.yaml") {
		t.Errorf("FileError = %+v", fe)
	}

	_, err = SetImages(dir, []types.Image{{Name: "api", NewTag: "bad tag"}})
	if !errors.Is(err, ErrInvalidImage) || !errors.As(err, &fe) || fe.Path == "" {
		t.Errorf("invalid change: %v, want a *FileError with a path wrapping ErrInvalidImage", err)
	}
}

// TestEditImagesKeepOnly: Keep fields never change an existing entry (EditImages then
// hands back the input slice itself), while a new image with only Keep fields is added
// with just its name.
func TestEditImagesKeepOnly(t *testing.T) {
	t.Parallel()
	in := []byte("images:\n- name: web\n  newTag: v1\n")
	out, changed, err := EditImages(in, []types.Image{{Name: "web", NewName: Keep, NewTag: "v1", Digest: Keep}})
	if err != nil || changed || &out[0] != &in[0] {
		t.Errorf("no-op edit: changed=%v err=%v, want the input slice back", changed, err)
	}
	out, changed, err = EditImages(in, []types.Image{{Name: "web2", NewName: Keep, NewTag: Keep, Digest: Keep}})
	if err != nil || !changed {
		t.Fatalf("new Keep-only image: changed=%v err=%v", changed, err)
	}
	if want := "images:\n- name: web\n  newTag: v1\n- name: web2\n"; string(out) != want {
		t.Errorf("new Keep-only image:\n%s", lineDiff(want, string(out)))
	}
}

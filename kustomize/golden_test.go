package kustomize

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
)

var update = flag.Bool("update", false, "rewrite the expected.yaml files of the golden tests (review the diff!)")

const goldenDir = "testdata/setimages"

// TestSetImagesGolden runs every case in testdata/setimages. A case directory holds the
// input kustomization file (kustomization.yaml, kustomization.yml or Kustomization, or
// none or two for the error cases), change.txt (one ParseImageArg argument per line, or
// "remove NAME" for RemoveImages; blank lines and # comments are ignored), and either
// expected.yaml, the exact bytes the edits must produce, or error.txt, a substring of the
// error they must return. Consecutive arguments are one SetImages call, consecutive
// removals one RemoveImages call, run in the order of the file (so a case can add an
// entry and take it back).
//
// A successful case also checks that running the last call again changes nothing (and
// does not write), and that the edited kustomization builds and renders every image as
// FormatImage says.
func TestSetImagesGolden(t *testing.T) {
	cases, err := os.ReadDir(goldenDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 25 {
		t.Fatalf("only %d golden cases; the suite expects at least 25", len(cases))
	}
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			t.Parallel()
			runGolden(t, filepath.Join(goldenDir, c.Name()))
		})
	}
}

func runGolden(t *testing.T, caseDir string) {
	wantErr, errCase := readOptional(t, filepath.Join(caseDir, "error.txt"))
	wantOut, outCase := readOptional(t, filepath.Join(caseDir, "expected.yaml"))
	if errCase == outCase && !*update {
		t.Fatalf("%s needs exactly one of expected.yaml and error.txt", caseDir)
	}

	// The overlay lives at <root>/overlays/env so that inputs can use ../../base.
	root := t.TempDir()
	dir := filepath.Join(root, "overlays", "env")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var input []byte
	var inputName string
	for _, n := range konfig.RecognizedKustomizationFileNames() {
		data, ok := readOptional(t, filepath.Join(caseDir, n))
		if !ok {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, n), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		input, inputName = []byte(data), n
	}

	batches, err := readChanges(filepath.Join(caseDir, "change.txt"))
	for _, b := range batches {
		if err != nil {
			break
		}
		_, err = b.run(dir)
	}
	if errCase {
		want := strings.TrimSpace(wantErr)
		if err == nil {
			t.Fatalf("SetImages succeeded, want an error containing %q", want)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error:\n  %v\nwant it to contain:\n  %s", err, want)
		}
		if inputName != "" {
			after, rerr := os.ReadFile(filepath.Join(dir, inputName))
			if rerr != nil || !bytes.Equal(after, input) {
				t.Fatalf("the file was modified although SetImages failed")
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("SetImages: %v", err)
	}
	path := filepath.Join(dir, inputName)
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(filepath.Join(caseDir, "expected.yaml"), got, 0o644); err != nil {
			t.Fatal(err)
		}
		wantOut = string(got)
	}
	if !bytes.Equal(got, []byte(wantOut)) {
		t.Fatalf("output differs from %s/expected.yaml (-want +got):\n%s", caseDir, lineDiff(wantOut, string(got)))
	}

	// Idempotent: the same change again is a no-op and does not touch the file.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	changed, err := batches[len(batches)-1].run(dir)
	if err != nil || changed {
		t.Fatalf("the last edit again = %v, %v; want false, nil", changed, err)
	}
	if fi, err := os.Stat(path); err != nil || !fi.ModTime().Equal(old) {
		t.Fatalf("the last edit again rewrote the file")
	}

	checkRendered(t, root, dir)
}

// checkRendered builds the edited overlay on a base whose Deployment runs one container
// per image entry (image: <name>) and checks each renders as FormatImage(entry).
func checkRendered(t *testing.T, root, dir string) {
	t.Helper()
	_, entries, err := ReadImages(dir)
	if err != nil {
		t.Fatalf("ReadImages: %v", err)
	}
	var containers strings.Builder
	for i, img := range entries {
		fmt.Fprintf(&containers, "      - name: c%d\n        image: %s\n", i, img.Name)
	}
	writeFiles(t, root, map[string]string{
		"base/kustomization.yaml": "resources:\n- deployment.yaml\n",
		"base/deployment.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n" +
			"  template:\n    spec:\n      containers:\n" + containers.String(),
	})
	rel, err := filepath.Rel(root, dir)
	if err != nil {
		t.Fatal(err)
	}
	rm, err := Build(root, rel)
	if err != nil {
		t.Fatalf("the edited overlay does not build: %v", err)
	}
	var got []string
	for _, r := range rm.Resources() {
		if r.GetKind() != "Deployment" {
			continue
		}
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		spec, _ := m["spec"].(map[string]any)
		tmpl, _ := spec["template"].(map[string]any)
		pod, _ := tmpl["spec"].(map[string]any)
		cs, _ := pod["containers"].([]any)
		for _, c := range cs {
			got = append(got, fmt.Sprint(c.(map[string]any)["image"]))
		}
	}
	if len(got) != len(entries) {
		t.Fatalf("rendered %d containers, want %d (does the input list ../../base in resources?)", len(got), len(entries))
	}
	for i, img := range entries {
		if want := FormatImage(img); got[i] != want {
			t.Errorf("container %d renders image %q, want %q", i, got[i], want)
		}
	}
}

// editBatch is one SetImages (set) or RemoveImages (remove) call of a golden case.
type editBatch struct {
	set    []types.Image
	remove []string
}

func (b editBatch) run(dir string) (bool, error) {
	if b.remove != nil {
		return RemoveImages(dir, b.remove)
	}
	return SetImages(dir, b.set)
}

// readChanges parses change.txt into calls.
func readChanges(path string) ([]editBatch, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []editBatch
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, ok := strings.CutPrefix(line, "remove "); ok {
			if len(out) == 0 || out[len(out)-1].remove == nil {
				out = append(out, editBatch{remove: []string{}})
			}
			out[len(out)-1].remove = append(out[len(out)-1].remove, strings.TrimSpace(name))
			continue
		}
		img, err := ParseImageArg(line)
		if err != nil {
			return nil, err
		}
		if len(out) == 0 || out[len(out)-1].remove != nil {
			out = append(out, editBatch{})
		}
		out[len(out)-1].set = append(out[len(out)-1].set, img)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("change.txt has no change")
	}
	return out, nil
}

func readOptional(t *testing.T, path string) (string, bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(data), true
}

func writeFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// lineDiff is a small line diff (longest common subsequence) for test failures. Line
// breaks and other invisible bytes are shown: "\r" as ␍, a missing final newline as
// "⏚ (no newline at end)".
func lineDiff(want, got string) string {
	split := func(s string) []string {
		lines := strings.SplitAfter(s, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		for i, l := range lines {
			l = strings.ReplaceAll(l, "\r", "␍")
			if !strings.HasSuffix(l, "\n") {
				l += "⏚ (no newline at end)"
			}
			l = strings.TrimSuffix(l, "\n")
			l = strings.ReplaceAll(l, "\t", "→")
			lines[i] = l
		}
		return lines
	}
	a, b := split(want), split(got)
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			out.WriteString("  " + a[i] + "\n")
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			out.WriteString("- " + a[i] + "\n")
			i++
		default:
			out.WriteString("+ " + b[j] + "\n")
			j++
		}
	}
	return out.String()
}

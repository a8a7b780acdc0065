package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
)

// FindKustomization returns the path of the kustomization file in dir: exactly one of
// kustomization.yaml, kustomization.yml and Kustomization must exist, as a regular file
// (a symlink is refused, since SetImages would replace it). A missing directory or file
// gives an error wrapping ErrNoKustomization; two or more files are an error too.
func FindKustomization(dir string) (string, error) {
	names := konfig.RecognizedKustomizationFileNames()
	var found []string
	for _, n := range names {
		p := filepath.Join(dir, n)
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return "", &FileError{Path: p, Err: fmt.Errorf("looking for the kustomization file: %w", err)}
		case fi.Mode()&os.ModeSymlink != 0:
			return "", &FileError{Path: p, Err: errors.New("the kustomization file is a symlink; deliver edits only regular files")}
		case !fi.Mode().IsRegular():
			return "", &FileError{Path: p, Err: errors.New("the kustomization file is not a regular file")}
		}
		found = append(found, n)
	}
	switch len(found) {
	case 0:
		return "", &FileError{Path: dir, Err: fmt.Errorf("%w (looked for %s)", ErrNoKustomization, strings.Join(names, ", "))}
	case 1:
		return filepath.Join(dir, found[0]), nil
	}
	return "", &FileError{Path: dir, Err: fmt.Errorf("more than one kustomization file (%s); kustomize refuses that too", strings.Join(found, ", "))}
}

// ReadImages returns the path of dir's kustomization file and its images overrides in
// file order (an empty list when it has none). Fields that are absent or null come back
// empty; other values are returned as written, even a number kustomize would reject.
// It fails on the same malformed files SetImages refuses.
func ReadImages(dir string) (path string, images []types.Image, err error) {
	path, err = FindKustomization(dir)
	if err != nil {
		return "", nil, err
	}
	data, _, err := readFile(path)
	if err != nil {
		return "", nil, err
	}
	s, err := parseSource(data)
	if err != nil {
		return "", nil, withPath(path, err)
	}
	images = make([]types.Image, 0, len(s.entries))
	for _, e := range s.entries {
		images = append(images, e.image)
	}
	return path, images, nil
}

// SetImages applies image changes to the images list of the kustomization file in dir
// (see FindKustomization) and reports whether the file changed. The rules per change,
// matched to an entry by Name:
//
//   - NewName, NewTag, Digest and TagSuffix are each: a value, which is set; "" which
//     removes the field if present (so `web:1.2` drops an existing digest, newName and
//     tagSuffix, as `kustomize edit set image` does); or "*" (Keep), which leaves the
//     field as it is. ParseImageArg leaves TagSuffix empty: every argument form drops a
//     tagSuffix, whose value kustomize would otherwise ignore (a tag or digest is set)
//     or append to the base's tag (neither is), so the entry renders what it says.
//   - An image with no entry is appended after the last entry, in the layout of its
//     neighbours; "*" fields are omitted. Without an images key, one is added at the end
//     of the file; an empty one (images: or images: []) gets the entries.
//
// Only the changed values are touched; every other byte of the file stays as it was
// (see EditImages). When nothing changes the file is not written at all. Otherwise it is
// replaced atomically (a temporary file in dir renamed over it) with its permissions
// kept. On any error nothing is written; errors are *FileError values naming the file
// and, when known, the line, and invalid changes wrap ErrInvalidImage.
func SetImages(dir string, images []types.Image) (changed bool, err error) {
	return editFile(dir, func(data []byte) ([]byte, bool, error) { return EditImages(data, images) })
}

// editFile runs a pure edit on the kustomization file in dir and writes the result, as
// SetImages describes.
func editFile(dir string, edit func([]byte) ([]byte, bool, error)) (changed bool, err error) {
	path, err := FindKustomization(dir)
	if err != nil {
		return false, err
	}
	data, fi, err := readFile(path)
	if err != nil {
		return false, err
	}
	out, changed, err := edit(data)
	if err != nil {
		return false, withPath(path, err)
	}
	if !changed {
		return false, nil
	}
	if err := writeAtomic(path, out, fi.Mode().Perm()); err != nil {
		return false, &FileError{Path: path, Err: err}
	}
	return true, nil
}

// EditImages is the pure editor behind SetImages: it applies the changes to the bytes of
// a kustomization file and returns the new bytes and whether they differ. When nothing
// changes it returns data itself.
//
// The edit splices the original bytes: a changed value is replaced in place, keeping its
// quoting (single- or double-quoted stays so; plain stays plain unless the new value
// would not read back as a string, such as 1234 or 1.10, which are double-quoted); a
// removed field loses its line; an added field goes on a new line after the entry's last
// key, at its indentation (or ", key: value" inside a flow mapping); a new entry copies
// the indentation, key order and quoting of the entry before it. Comments, blank lines,
// key order, indentation, flow or block style, a leading "---" or %YAML directive, CRLF
// line breaks and a missing final newline are all kept. The result is parsed again and
// checked: every entry and every other key must read back as intended, or the edit
// fails with an internal error.
//
// Refused with a *FileError (without a path): invalid changes (ErrInvalidImage) or two
// changes for one name; input over 1 MiB, not UTF-8, or with line breaks other than LF
// and CRLF; YAML errors; several documents; a top-level value that is not a block
// mapping, or top-level keys that are not plain strings (merge keys, explicit "? "
// keys); images that is not a list; entries that are not mappings, have no name, or
// repeat a name; anchors or aliases inside images; and value layouts the byte editor
// does not handle (block scalars, multi-line plain values, explicit tags other than
// !!str on a value it changes).
func EditImages(data []byte, images []types.Image) (out []byte, changed bool, err error) {
	seen := map[string]bool{}
	for _, img := range images {
		if err := ValidateImage(img); err != nil {
			return nil, false, &FileError{Err: err}
		}
		if seen[img.Name] {
			return nil, false, &FileError{Err: fmt.Errorf("two changes for image %q in one edit", img.Name)}
		}
		seen[img.Name] = true
	}
	s, err := parseSource(data)
	if err != nil {
		return nil, false, err
	}
	ed := &editor{s: s, written: map[int][]string{}}
	want := make([]types.Image, len(s.entries))
	touched := make([]bool, len(s.entries))
	var added []types.Image
	for i, e := range s.entries {
		want[i] = e.image
	}
	for _, img := range images {
		e := s.entryNamed(img.Name)
		if e == nil {
			n := resolveKeep(img, types.Image{})
			added = append(added, n)
			want = append(want, n)
			continue
		}
		n, err := ed.editEntry(e, img)
		if err != nil {
			return nil, false, err
		}
		want[e.index], touched[e.index] = n, true
	}
	if len(added) > 0 {
		if err := ed.addEntries(added); err != nil {
			return nil, false, err
		}
	}
	if len(ed.splices) == 0 {
		return data, false, nil
	}
	out, err = ed.apply()
	if err == nil {
		err = verify(s, out, want, touched, ed.written)
	}
	if err != nil {
		return nil, false, &FileError{Err: fmt.Errorf("internal error, nothing was written: the edited file did not check out: %w", err)}
	}
	if bytes.Equal(out, data) {
		return data, false, nil
	}
	return out, true, nil
}

// resolveKeep applies Keep: fields of img equal to "*" take the value from have.
func resolveKeep(img, have types.Image) types.Image {
	out := img
	if out.TagSuffix == Keep {
		out.TagSuffix = have.TagSuffix
	}
	if out.NewName == Keep {
		out.NewName = have.NewName
	}
	if out.NewTag == Keep {
		out.NewTag = have.NewTag
	}
	if out.Digest == Keep {
		out.Digest = have.Digest
	}
	return out
}

func getField(img types.Image, key string) string {
	switch key {
	case keyName:
		return img.Name
	case keyNewName:
		return img.NewName
	case keyNewTag:
		return img.NewTag
	case keyDigest:
		return img.Digest
	case keyTagSuffix:
		return img.TagSuffix
	}
	return ""
}

// splice replaces data[start:end] with text (an insertion when start == end).
type splice struct {
	start, end int
	text       string
}

// editor collects the splices for one edit.
type editor struct {
	s       *source
	splices []splice
	written map[int][]string // entry index -> keys whose value the edit writes
}

func (ed *editor) add(start, end int, text string) {
	ed.splices = append(ed.splices, splice{start, end, text})
}

// apply performs the splices. Overlapping or touching deletions are merged; any other
// overlap is an error. A deletion of the last line of a file without a final newline
// also takes the line break before it, so the file still ends without one.
func (ed *editor) apply() ([]byte, error) {
	data := ed.s.data
	sp := slices.Clone(ed.splices)
	sort.SliceStable(sp, func(i, j int) bool {
		if sp[i].start != sp[j].start {
			return sp[i].start < sp[j].start
		}
		return sp[i].end < sp[j].end
	})
	var merged []splice
	for _, x := range sp {
		if n := len(merged); n > 0 && x.text == "" && merged[n-1].text == "" && x.start <= merged[n-1].end {
			merged[n-1].end = max(merged[n-1].end, x.end)
			continue
		}
		merged = append(merged, x)
	}
	noFinalNL := len(data) > 0 && data[len(data)-1] != '\n'
	for i, x := range merged {
		if x.text == "" && x.end == len(data) && noFinalNL && x.start > 0 && data[x.start-1] == '\n' {
			merged[i].start--
			if merged[i].start > 0 && data[merged[i].start-1] == '\r' {
				merged[i].start--
			}
		}
	}
	var b bytes.Buffer
	pos := 0
	for _, x := range merged {
		if x.start < pos || x.end < x.start || x.end > len(data) {
			return nil, fmt.Errorf("overlapping edits at byte %d", x.start)
		}
		b.Write(data[pos:x.start])
		b.WriteString(x.text)
		pos = x.end
	}
	b.Write(data[pos:])
	return b.Bytes(), nil
}

// editEntry plans the changes to one existing entry and returns the image it will hold.
func (ed *editor) editEntry(e *entry, img types.Image) (types.Image, error) {
	m := e.node
	result := resolveKeep(img, e.image)
	var removed []int // key indices, ascending
	var added []string
	for _, key := range managedKeys() {
		w := getField(img, key)
		if w == Keep {
			continue
		}
		ki, has := e.keys[key]
		var k, v *yaml.Node
		if has {
			k, v = m.Content[ki], m.Content[ki+1]
		}
		null := has && v.ShortTag() == "!!null"
		switch {
		case w == "" && has && !null:
			removed = append(removed, ki)
		case w == "":
		case has:
			if !null && v.Value == w && v.ShortTag() == "!!str" {
				continue
			}
			if err := ed.replaceValue(e, k, v, w); err != nil {
				return result, err
			}
			ed.written[e.index] = append(ed.written[e.index], key)
		default:
			added = append(added, key)
			ed.written[e.index] = append(ed.written[e.index], key)
		}
	}
	sort.Ints(removed)
	if err := ed.removeKeys(e, removed); err != nil {
		return result, err
	}
	if len(added) > 0 {
		if err := ed.addKeys(e, added, result); err != nil {
			return result, err
		}
	}
	return result, nil
}

// replaceValue replaces the text of one scalar value, keeping its quoting style.
func (ed *editor) replaceValue(e *entry, k, v *yaml.Node, w string) error {
	s := ed.s
	if v.Style&yaml.TaggedStyle != 0 && v.ShortTag() != "!!str" {
		return layoutErr(v, "images[%d].%s: the explicit tag %s is not supported", e.index, k.Value, v.Tag)
	}
	start, end, err := s.scalarSpan(k, v)
	if err != nil {
		return prefixErr(err, "images[%d].%s", e.index, k.Value)
	}
	text := render(w, styleOf(v))
	if v.Style&yaml.TaggedStyle != 0 && styleOf(v) == stylePlain {
		text = w // an explicit !!str makes any plain value a string
	}
	if isImplicitNull(v) {
		text = " " + text
	}
	ed.add(start, end, text)
	return nil
}

// removeKeys deletes key/value pairs from an entry. In a block mapping a pair loses its
// whole line (with any comment on it); the first pair on the "- " line instead gives
// its place to the next remaining key. In a flow mapping the pair and its separator go.
func (ed *editor) removeKeys(e *entry, removed []int) error {
	s := ed.s
	m := e.node
	flow := m.Style&yaml.FlowStyle != 0
	isRemoved := func(ki int) bool { return slices.Contains(removed, ki) }
	handled := map[int]bool{}
	for _, ki := range removed {
		if handled[ki] {
			continue
		}
		k, v := m.Content[ki], m.Content[ki+1]
		keyStart := s.offset(k)
		if keyStart < 0 {
			return layoutErr(k, "images[%d]: cannot locate key %s", e.index, k.Value)
		}
		vEnd, err := s.nodeEnd(k, v)
		if err != nil {
			return prefixErr(err, "images[%d].%s", e.index, k.Value)
		}
		onDashLine := strings.TrimLeft(string(s.data[s.lineOf(keyStart):keyStart]), " \t") != ""
		if (flow && ki == 0) || (!flow && onDashLine) {
			// Pull the next remaining key into this one's place.
			j := ki
			for j < len(m.Content) && isRemoved(j) {
				handled[j] = true
				j += 2
			}
			if j >= len(m.Content) {
				return layoutErr(k, "images[%d]: cannot remove every key", e.index)
			}
			next := s.offset(m.Content[j])
			if next < keyStart {
				return layoutErr(k, "images[%d]: cannot locate key %s", e.index, m.Content[j].Value)
			}
			ed.add(keyStart, next, "")
			continue
		}
		if flow {
			prevEnd, err := s.nodeEnd(m.Content[ki-2], m.Content[ki-1])
			if err != nil {
				return prefixErr(err, "images[%d]", e.index)
			}
			ed.add(prevEnd, vEnd, "")
			continue
		}
		if !s.restIsTrivia(vEnd) {
			return layoutErr(v, "images[%d].%s: unexpected text after the value", e.index, k.Value)
		}
		end, _ := s.lineEnd(vEnd)
		ed.add(s.lineOf(keyStart), end, "") // apply handles the last line of a file without a final newline
	}
	return nil
}

// addKeys appends new key/value pairs to an entry after its last key.
func (ed *editor) addKeys(e *entry, keys []string, img types.Image) error {
	s := ed.s
	m := e.node
	lastK, lastV := m.Content[len(m.Content)-2], m.Content[len(m.Content)-1]
	end, err := s.nodeEnd(lastK, lastV)
	if err != nil {
		return prefixErr(err, "images[%d]", e.index)
	}
	if m.Style&yaml.FlowStyle != 0 {
		var b strings.Builder
		if isImplicitNull(lastV) {
			// "{..., x: }": end is right after the colon, and "x:," would read differently.
			b.WriteString(" ")
		}
		for _, k := range keys {
			b.WriteString(", " + keyText(k, e) + ": " + render(getField(img, k), stylePlain))
		}
		ed.add(end, end, b.String())
		return nil
	}
	if !s.restIsTrivia(end) {
		return layoutErr(lastV, "images[%d].%s: unexpected text after the value", e.index, lastK.Value)
	}
	first := s.offset(m.Content[0])
	if first < 0 {
		return layoutErr(m, "images[%d]: cannot locate the entry", e.index)
	}
	indent := strings.Repeat(" ", s.column(first))
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, indent+keyText(k, e)+": "+render(getField(img, k), stylePlain))
	}
	pos, hadNL := s.lineEnd(end)
	ed.add(pos, pos, joinLines(lines, s.nl, hadNL))
	return nil
}

// joinLines joins lines with nl. When the insertion point had a line break (afterNL),
// every line ends with one; otherwise (the end of a file without a final newline) the
// text starts with one and the file still ends without it.
func joinLines(lines []string, nl string, afterNL bool) string {
	if afterNL {
		return strings.Join(lines, nl) + nl
	}
	return nl + strings.Join(lines, nl)
}

// addEntries appends new entries to the images list, creating or filling it as needed.
func (ed *editor) addEntries(imgs []types.Image) error {
	s := ed.s
	switch {
	case s.images == nil:
		return ed.addImagesKey(imgs)
	case s.images.Kind == yaml.SequenceNode && len(s.images.Content) > 0:
		return ed.appendToList(imgs)
	}
	return ed.fillEmptyList(imgs)
}

// appendToList adds entries after the last one, in its style.
func (ed *editor) appendToList(imgs []types.Image) error {
	s := ed.s
	seq := s.images
	last := s.entries[len(s.entries)-1]
	end, err := s.nodeEnd(nil, last.node)
	if err != nil {
		return prefixErr(err, "images[%d]", last.index)
	}
	if seq.Style&yaml.FlowStyle != 0 {
		var b strings.Builder
		for _, img := range imgs {
			b.WriteString(", " + ed.flowEntry(img, last))
		}
		ed.add(end, end, b.String())
		return nil
	}
	if !s.restIsTrivia(end) {
		return layoutErr(last.node, "images[%d]: unexpected text after the entry", last.index)
	}
	dash := s.offset(seq)
	if dash < 0 || s.data[dash] != '-' {
		return layoutErr(seq, "images: unsupported list layout")
	}
	dashCol := s.column(dash)
	keyCol := dashCol + 2
	if last.node.Style&yaml.FlowStyle == 0 {
		if first := s.offset(last.node.Content[0]); first >= 0 && s.column(first) > dashCol+1 {
			keyCol = s.column(first)
		}
	}
	var lines []string
	for _, img := range imgs {
		if last.node.Style&yaml.FlowStyle != 0 {
			lines = append(lines, strings.Repeat(" ", dashCol)+"- "+ed.flowEntry(img, last))
			continue
		}
		lines = append(lines, blockEntry(img, last, dashCol, keyCol)...)
	}
	pos, hadNL := s.lineEnd(end)
	ed.add(pos, pos, joinLines(lines, s.nl, hadNL))
	return nil
}

// fillEmptyList gives "images:", "images: ~" or "images: []" block entries.
func (ed *editor) fillEmptyList(imgs []types.Image) error {
	s := ed.s
	colon, err := s.colonEnd(s.imagesKey)
	if err != nil {
		return err
	}
	valueEnd := colon
	if !isImplicitNull(s.images) {
		if valueEnd, err = s.nodeEnd(s.imagesKey, s.images); err != nil {
			return err
		}
		ed.add(colon, valueEnd, "")
	}
	if !s.restIsTrivia(valueEnd) {
		return layoutErr(s.images, "images: unexpected text after the value")
	}
	keyOff := s.offset(s.imagesKey)
	if keyOff < 0 {
		return layoutErr(s.imagesKey, "images: cannot locate the key")
	}
	keyCol := s.column(keyOff)
	dashCol := keyCol + ed.listIndent()
	var lines []string
	for _, img := range imgs {
		lines = append(lines, blockEntry(img, nil, dashCol, dashCol+2)...)
	}
	pos, hadNL := s.lineEnd(valueEnd)
	ed.add(pos, pos, joinLines(lines, s.nl, hadNL))
	return nil
}

// addImagesKey appends "images:" with the entries at the end of the file.
func (ed *editor) addImagesKey(imgs []types.Image) error {
	s := ed.s
	if docEndMarker(s.data) {
		return &FileError{Err: errors.New("a document end marker (...) is not supported when adding images")}
	}
	keyCol := 0
	if s.root != nil {
		if off := s.offset(s.root.Content[0]); off >= 0 {
			keyCol = s.column(off)
		}
	}
	lines := []string{strings.Repeat(" ", keyCol) + "images:"}
	dashCol := keyCol + ed.listIndent()
	for _, img := range imgs {
		lines = append(lines, blockEntry(img, nil, dashCol, dashCol+2)...)
	}
	endsWithNL := len(s.data) == 0 || s.data[len(s.data)-1] == '\n'
	if !endsWithNL && s.root != nil && endsInBlockScalar(s.root) {
		// The file ends inside a block scalar ("key: |" or ">") with no final newline:
		// a line break after it would become part of its value. Put images first instead.
		off := s.offset(s.root.Content[0])
		if off < 0 || len(bytes.TrimLeft(s.data[s.lineOf(off):off], " ")) > 0 {
			return layoutErr(s.root, "cannot add images: the file ends in a block scalar without a final newline, and its first key does not start a line")
		}
		start := s.lineOf(off)
		ed.add(start, start, joinLines(lines, s.nl, true))
		return nil
	}
	ed.add(len(s.data), len(s.data), joinLines(lines, s.nl, endsWithNL))
	return nil
}

// endsInBlockScalar reports whether the last value in n, in document order, is a literal
// (|) or folded (>) block scalar.
func endsInBlockScalar(n *yaml.Node) bool {
	for len(n.Content) > 0 {
		n = n.Content[len(n.Content)-1]
	}
	return n.Kind == yaml.ScalarNode && n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0
}

// listIndent is how far the file indents block lists under their key: the first
// top-level block list decides (0 for "key:\n- item"), 2 when there is none.
func (ed *editor) listIndent() int {
	s := ed.s
	if s.root == nil {
		return 2
	}
	for i := 0; i+1 < len(s.root.Content); i += 2 {
		k, v := s.root.Content[i], s.root.Content[i+1]
		if v.Kind != yaml.SequenceNode || v.Style&yaml.FlowStyle != 0 || len(v.Content) == 0 {
			continue
		}
		ko, vo := s.offset(k), s.offset(v)
		if ko < 0 || vo < 0 || s.data[vo] != '-' {
			continue
		}
		if d := s.column(vo) - s.column(ko); d >= 0 && d <= 8 {
			return d
		}
	}
	return 2
}

// entryKeys returns the keys a new entry for img gets. The order follows the neighbour
// entry: name, newName, newTag, digest when its keys are in that order; alphabetical
// when they are sorted that way instead (as `kustomize edit` writes them); otherwise the
// neighbour's order, with keys it lacks at the end.
func entryKeys(img types.Image, neighbour *entry) []string {
	canonical := []string{keyName, keyNewName, keyNewTag, keyDigest, keyTagSuffix}
	var keys []string
	for _, k := range canonical {
		if getField(img, k) != "" {
			keys = append(keys, k)
		}
	}
	if neighbour == nil {
		return keys
	}
	var order []string
	for i := 0; i < len(neighbour.node.Content); i += 2 {
		if k := neighbour.node.Content[i].Value; slices.Contains(canonical, k) {
			order = append(order, k)
		}
	}
	rank := func(k string) int { return slices.Index(canonical, k) }
	if slices.IsSortedFunc(order, func(a, b string) int { return rank(a) - rank(b) }) {
		return keys
	}
	if slices.IsSorted(order) {
		slices.Sort(keys)
		return keys
	}
	sort.SliceStable(keys, func(i, j int) bool {
		ri, rj := slices.Index(order, keys[i]), slices.Index(order, keys[j])
		if ri < 0 {
			ri = len(order) + rank(keys[i])
		}
		if rj < 0 {
			rj = len(order) + rank(keys[j])
		}
		return ri < rj
	})
	return keys
}

// neighbourStyle is the quoting the neighbour entry uses for key.
func neighbourStyle(neighbour *entry, key string) quoteStyle {
	if neighbour == nil {
		return stylePlain
	}
	_, v := neighbour.field(key)
	return styleOf(v)
}

// keyText writes a key quoted like the keys of the given entry (by its name key), so a
// JSON-style file keeps quoted keys.
func keyText(k string, like *entry) string {
	if like == nil {
		return k
	}
	nk, _ := like.field(keyName)
	switch styleOf(nk) {
	case styleDouble:
		return `"` + k + `"`
	case styleSingle:
		return "'" + k + "'"
	}
	return k
}

// blockEntry renders a block-style entry: "- " at dashCol, keys at keyCol.
func blockEntry(img types.Image, neighbour *entry, dashCol, keyCol int) []string {
	keys := entryKeys(img, neighbour)
	lines := make([]string, 0, len(keys))
	for i, k := range keys {
		prefix := strings.Repeat(" ", keyCol)
		if i == 0 {
			prefix = strings.Repeat(" ", dashCol) + "-" + strings.Repeat(" ", keyCol-dashCol-1)
		}
		lines = append(lines, prefix+keyText(k, neighbour)+": "+render(getField(img, k), neighbourStyle(neighbour, k)))
	}
	return lines
}

// flowEntry renders "{name: x, newTag: y}", padded inside the braces like the neighbour.
func (ed *editor) flowEntry(img types.Image, neighbour *entry) string {
	pad := ""
	if off := ed.s.offset(neighbour.node); off >= 0 && off+1 < len(ed.s.data) && ed.s.data[off] == '{' && ed.s.data[off+1] == ' ' {
		pad = " "
	}
	keys := entryKeys(img, neighbour)
	pairs := make([]string, 0, len(keys))
	for _, k := range keys {
		pairs = append(pairs, keyText(k, neighbour)+": "+render(getField(img, k), neighbourStyle(neighbour, k)))
	}
	return "{" + pad + strings.Join(pairs, ", ") + pad + "}"
}

// docEndMarker reports whether the file has a "..." document end marker line.
func docEndMarker(data []byte) bool {
	for _, line := range bytes.Split(data, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("...")) && len(bytes.TrimRight(line[3:], " \t\r")) == 0 {
			return true
		}
	}
	return false
}

// prefixErr adds a location prefix to the message of a *FileError.
func prefixErr(err error, format string, args ...any) error {
	var fe *FileError
	if errors.As(err, &fe) {
		return &FileError{Line: fe.Line, Err: fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), fe.Err)}
	}
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)
}

// verify re-parses the edited file and checks it says what was intended: the images
// list equals want (in order, with every value written by the edit a YAML string),
// entries not touched are unchanged, and every other key of the file is unchanged.
func verify(before *source, out []byte, want []types.Image, touched []bool, written map[int][]string) error {
	after, err := parseSource(out)
	if err != nil {
		return err
	}
	if len(after.entries) != len(want) {
		return fmt.Errorf("%d images entries, want %d", len(after.entries), len(want))
	}
	for i, e := range after.entries {
		if e.image != want[i] {
			return fmt.Errorf("images[%d] reads %+v, want %+v", i, e.image, want[i])
		}
		if i < len(before.entries) && !touched[i] {
			if !sameNode(before.entries[i].node, e.node) {
				return fmt.Errorf("images[%d] changed but was not to be edited", i)
			}
			continue
		}
		keys := written[i]
		if i >= len(before.entries) {
			keys = []string{keyName, keyNewName, keyNewTag, keyDigest, keyTagSuffix}
		}
		for _, k := range keys {
			if _, v := e.field(k); v != nil && v.ShortTag() != "!!str" {
				return fmt.Errorf("images[%d].%s reads as %s, not a string", i, k, v.ShortTag())
			}
		}
		if i < len(before.entries) && !sameExcept(before.entries[i].node, e.node, managedKeys()) {
			return fmt.Errorf("images[%d]: a key other than newName, newTag, digest and tagSuffix changed", i)
		}
	}
	if !sameExcept(before.root, after.root, []string{"images"}) {
		return errors.New("a key other than images changed")
	}
	return nil
}

// sameExcept compares two mappings ignoring the given keys (either may be nil, meaning
// an empty mapping).
func sameExcept(a, b *yaml.Node, skip []string) bool {
	pairs := func(n *yaml.Node) []*yaml.Node {
		if n == nil {
			return nil
		}
		var out []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !slices.Contains(skip, n.Content[i].Value) {
				out = append(out, n.Content[i], n.Content[i+1])
			}
		}
		return out
	}
	pa, pb := pairs(a), pairs(b)
	if len(pa) != len(pb) {
		return false
	}
	for i := range pa {
		if !sameNode(pa[i], pb[i]) {
			return false
		}
	}
	return true
}

// sameNode compares the data of two nodes, ignoring positions, styles and comments.
func sameNode(a, b *yaml.Node) bool {
	if a.Kind != b.Kind || a.ShortTag() != b.ShortTag() || a.Value != b.Value || a.Anchor != b.Anchor || len(a.Content) != len(b.Content) {
		return false
	}
	for i := range a.Content {
		if !sameNode(a.Content[i], b.Content[i]) {
			return false
		}
	}
	return true
}

// readFile reads a kustomization file of at most maxFileSize bytes.
func readFile(path string) ([]byte, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, &FileError{Path: path, Err: fmt.Errorf("reading: %w", err)}
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, &FileError{Path: path, Err: fmt.Errorf("reading: %w", err)}
	}
	if fi.Size() > maxFileSize {
		return nil, nil, &FileError{Path: path, Err: fmt.Errorf("file is %d bytes, larger than the %d bytes (1 MiB) deliver edits", fi.Size(), maxFileSize)}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, nil, &FileError{Path: path, Err: fmt.Errorf("reading: %w", err)}
	}
	return data, fi, nil
}

// writeAtomic replaces path with data through a temporary file in the same directory,
// so readers see the old or the new file, never a partial one.
func writeAtomic(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing: %w", err)
	}
	return nil
}

package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// RemoveImages deletes the images entries of the given names from the kustomization file
// in dir (see FindKustomization) and reports whether the file changed. A name without an
// entry is not an error: there is nothing to remove. The file is written as SetImages
// writes it: atomically, with its permissions, and not at all when nothing changes or an
// error occurs. It is how a revert takes back an entry that an edit added.
func RemoveImages(dir string, names []string) (changed bool, err error) {
	return editFile(dir, func(data []byte) ([]byte, bool, error) { return RemoveEntries(data, names) })
}

// RemoveEntries is the pure editor behind RemoveImages: it deletes the entries of the
// named images from the bytes of a kustomization file and returns the new bytes and
// whether they differ (data itself when nothing changes). Like EditImages it splices the
// original bytes, so the rest of the file stays as it was:
//
//   - In a block list an entry loses its lines, from its "- " line to the end of its last
//     line, with the comments on those lines; comment lines around it stay.
//   - In a flow list ([...]) the entry goes with the separator between it and its
//     neighbour.
//   - When every entry goes, a block list goes with its key: the lines from "images:" to
//     the end of the last entry. That is exactly what SetImages writes when it adds the
//     key, so removing the entries it added gives back the file as it was before, byte
//     for byte (an empty "images:" would also be a change kustomize does not need). A
//     flow list stays, as "[]": the key was written by hand.
//
// The result is parsed again and checked: the other entries and every other key must read
// as before, or the edit fails with an internal error. Refused with a *FileError (without
// a path): invalid names (ErrInvalidImage), the malformed files EditImages refuses, and
// layouts the byte editor does not handle (an entry whose first key is not on its "- "
// line, a block scalar in the entry).
func RemoveEntries(data []byte, names []string) (out []byte, changed bool, err error) {
	for _, n := range names {
		if err := checkName(n); err != nil {
			return nil, false, &FileError{Err: fmt.Errorf("%w %s: name %s", ErrInvalidImage, quoteArg(n), err)}
		}
	}
	s, err := parseSource(data)
	if err != nil {
		return nil, false, err
	}
	var removed []int
	for _, e := range s.entries {
		if slices.Contains(names, e.image.Name) {
			removed = append(removed, e.index)
		}
	}
	if len(removed) == 0 {
		return data, false, nil
	}
	ed := &editor{s: s, written: map[int][]string{}}
	if err := ed.removeEntries(removed); err != nil {
		return nil, false, err
	}
	out, err = ed.apply()
	if err == nil {
		err = verifyRemoval(s, out, removed)
	}
	if err != nil {
		return nil, false, &FileError{Err: fmt.Errorf("internal error, nothing was written: the edited file did not check out: %w", err)}
	}
	if bytes.Equal(out, data) {
		return data, false, nil
	}
	return out, true, nil
}

// removeEntries plans the deletion of the entries at the given indices (ascending).
func (ed *editor) removeEntries(removed []int) error {
	s := ed.s
	if s.images.Style&yaml.FlowStyle != 0 {
		return ed.removeFlowEntries(removed)
	}
	if len(removed) == len(s.entries) {
		return ed.removeImagesKey()
	}
	for _, i := range removed {
		start, end, err := ed.blockEntryLines(s.entries[i])
		if err != nil {
			return err
		}
		ed.add(start, end, "")
	}
	return nil
}

// blockEntryLines returns the byte range of the lines of an entry of a block list: from
// the start of its "- " line to the end of its last line.
func (ed *editor) blockEntryLines(e *entry) (start, end int, err error) {
	s := ed.s
	first := s.offset(e.node)
	if first < 0 {
		return 0, 0, layoutErr(e.node, "images[%d]: cannot locate the entry", e.index)
	}
	start = s.lineOf(first)
	lead := s.data[start:first]
	if start == 0 {
		lead = lead[min(s.bom, len(lead)):]
	}
	if strings.Trim(string(lead), " \t") != "-" {
		return 0, 0, layoutErr(e.node, "images[%d]: removing an entry whose first key is not on its \"- \" line is not supported", e.index)
	}
	last, err := s.nodeEnd(nil, e.node)
	if err != nil {
		return 0, 0, prefixErr(err, "images[%d]", e.index)
	}
	if !s.restIsTrivia(last) {
		return 0, 0, layoutErr(e.node, "images[%d]: unexpected text after the entry", e.index)
	}
	end, _ = s.lineEnd(last)
	return start, end, nil
}

// removeImagesKey deletes the images key with its whole block list: the lines from the
// key to the end of its last entry.
func (ed *editor) removeImagesKey() error {
	s := ed.s
	keyOff := s.offset(s.imagesKey)
	if keyOff < 0 {
		return layoutErr(s.imagesKey, "images: cannot locate the key")
	}
	start := s.lineOf(keyOff)
	if start == 0 {
		start = min(s.bom, keyOff)
	}
	if strings.Trim(string(s.data[start:keyOff]), " \t") != "" {
		return layoutErr(s.imagesKey, "images: the key does not start its line")
	}
	last := s.entries[len(s.entries)-1]
	end, err := s.nodeEnd(nil, last.node)
	if err != nil {
		return prefixErr(err, "images[%d]", last.index)
	}
	if !s.restIsTrivia(end) {
		return layoutErr(last.node, "images[%d]: unexpected text after the entry", last.index)
	}
	end, _ = s.lineEnd(end)
	ed.add(start, end, "")
	return nil
}

// removeFlowEntries deletes entries of a flow list: each run of removed entries goes with
// the separator after it, or, at the end of the list, the one before it. Removing every
// entry leaves "[]".
func (ed *editor) removeFlowEntries(removed []int) error {
	s := ed.s
	n := len(s.entries)
	starts, ends := make([]int, n), make([]int, n)
	for i, e := range s.entries {
		starts[i] = s.offset(e.node)
		if starts[i] < 0 {
			return layoutErr(e.node, "images[%d]: cannot locate the entry", i)
		}
		end, err := s.nodeEnd(nil, e.node)
		if err != nil {
			return prefixErr(err, "images[%d]", i)
		}
		ends[i] = end
	}
	if len(removed) == n {
		open := s.offset(s.images)
		if open < 0 {
			return layoutErr(s.images, "images: cannot locate the list")
		}
		open, err := s.skipProperties(s.images, open)
		if err != nil {
			return err
		}
		if s.data[open] != '[' {
			return layoutErr(s.images, "images: cannot locate the list")
		}
		closeEnd, err := s.nodeEnd(s.imagesKey, s.images)
		if err != nil {
			return err
		}
		ed.add(open, closeEnd, "[]")
		return nil
	}
	for k := 0; k < len(removed); {
		i := removed[k]
		j := i
		for k+1 < len(removed) && removed[k+1] == j+1 {
			k++
			j++
		}
		k++
		if j+1 < n {
			ed.add(starts[i], starts[j+1], "")
		} else {
			ed.add(ends[i-1], ends[j], "")
		}
	}
	return nil
}

// verifyRemoval re-parses the edited file and checks that exactly the removed entries are
// gone: the others read as before, in order, and so does every other key. A block list
// whose every entry went must have lost its key; a flow list must be empty.
func verifyRemoval(before *source, out []byte, removed []int) error {
	after, err := parseSource(out)
	if err != nil {
		return err
	}
	var kept []*entry
	for _, e := range before.entries {
		if !slices.Contains(removed, e.index) {
			kept = append(kept, e)
		}
	}
	if len(after.entries) != len(kept) {
		return fmt.Errorf("%d images entries, want %d", len(after.entries), len(kept))
	}
	for i, e := range after.entries {
		if e.image != kept[i].image || !sameNode(e.node, kept[i].node) {
			return fmt.Errorf("images[%d] changed but was not to be edited", i)
		}
	}
	switch {
	case len(kept) > 0 || before.images.Style&yaml.FlowStyle != 0:
		if after.images == nil || after.images.Kind != yaml.SequenceNode {
			return errors.New("the images list is gone")
		}
	case after.imagesKey != nil:
		return errors.New("the images key is still there with no entries")
	}
	if !sameExcept(before.root, after.root, []string{"images"}) {
		return errors.New("a key other than images changed")
	}
	return nil
}

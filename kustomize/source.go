package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/types"
)

// maxFileSize is the largest kustomization file deliver reads or edits (1 MiB).
const maxFileSize = 1 << 20

// Keys of an images entry.
const (
	keyName      = "name"
	keyNewName   = "newName"
	keyNewTag    = "newTag"
	keyDigest    = "digest"
	keyTagSuffix = "tagSuffix"
)

// managedKeys are the keys an image change sets or removes, in the order they are
// written.
func managedKeys() []string { return []string{keyNewName, keyNewTag, keyDigest, keyTagSuffix} }

// source is a parsed kustomization file together with what is needed to splice its
// bytes: where each line starts, the line break in use and the yaml.v3 nodes (whose
// Line/Column locate every scalar).
type source struct {
	data      []byte
	nl        string // "\n" or "\r\n", taken from the first line break
	lineStart []int  // byte offset of the start of each line
	bom       int    // length of a leading UTF-8 byte order mark (yaml.v3 does not count it)

	root      *yaml.Node // the top-level mapping; nil for an empty document
	imagesKey *yaml.Node // nil when there is no images key
	images    *yaml.Node // the value of images (a sequence or a null scalar)
	entries   []*entry
}

// entry is one element of the images sequence.
type entry struct {
	index int
	node  *yaml.Node // the entry's mapping
	image types.Image
	keys  map[string]int // key -> index of the key node in node.Content
}

// field returns the key and value nodes of key in the entry, or nils.
func (e *entry) field(key string) (k, v *yaml.Node) {
	i, ok := e.keys[key]
	if !ok {
		return nil, nil
	}
	return e.node.Content[i], e.node.Content[i+1]
}

var yamlErrLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseSource parses a kustomization file and indexes its images list. Errors are
// *FileError values without a path.
func parseSource(data []byte) (*source, error) {
	ferr := func(line int, format string, args ...any) error {
		return &FileError{Line: line, Err: fmt.Errorf(format, args...)}
	}
	if len(data) > maxFileSize {
		return nil, ferr(0, "file is %d bytes, larger than the %d bytes (1 MiB) deliver edits", len(data), maxFileSize)
	}
	if err := checkText(data); err != nil {
		return nil, err
	}
	s := &source{data: data, nl: "\n", lineStart: []int{0}}
	if bytes.HasPrefix(data, []byte("\uFEFF")) {
		s.bom = 3
	}
	for i, b := range data {
		if b == '\n' {
			s.lineStart = append(s.lineStart, i+1)
		}
	}
	if i := bytes.IndexByte(data, '\n'); i > 0 && data[i-1] == '\r' {
		s.nl = "\r\n"
	}

	doc, err := decodeSingle(data)
	if err != nil {
		return nil, err
	}
	if doc == nil || len(doc.Content) == 0 {
		return s, nil // empty or comments only
	}
	root := doc.Content[0]
	if isImplicitNull(root) && root.Anchor == "" {
		return s, nil // "---" and nothing else
	}
	if root.Kind != yaml.MappingNode {
		return nil, ferr(root.Line, "the document is a %s, not a mapping (kustomization files are mappings)", kindName(root))
	}
	if root.Style&yaml.FlowStyle != 0 {
		return nil, ferr(root.Line, "a flow-style ({...}) top-level mapping is not supported")
	}
	if root.Anchor != "" || len(root.Content) == 0 {
		return nil, ferr(root.Line, "unsupported top-level mapping")
	}
	s.root = root
	indent := s.entryIndent(root)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.ShortTag() == "!!merge" {
			return nil, ferr(k.Line, "merge keys (<<) at the top level are not supported")
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return nil, ferr(k.Line, "a top-level key that is not a string")
		}
		if s.explicitKey(k, indent) {
			return nil, ferr(k.Line, "explicit keys (? key) at the top level are not supported")
		}
		if k.Value != "images" {
			continue
		}
		if s.imagesKey != nil {
			return nil, ferr(k.Line, "duplicate key images (first at line %d)", s.imagesKey.Line)
		}
		s.imagesKey, s.images = k, v
	}
	if s.images == nil {
		return s, nil
	}
	if err := s.indexImages(); err != nil {
		return nil, err
	}
	return s, nil
}

// decodeSingle decodes exactly one YAML document; it returns nil for an empty stream.
func decodeSingle(data []byte) (doc *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, &FileError{Err: fmt.Errorf("parsing YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first yaml.Node
	if err := dec.Decode(&first); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, yamlError(err)
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case err == nil:
		return nil, &FileError{Line: second.Line, Err: errors.New("more than one YAML document; a kustomization file holds exactly one")}
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err)
	}
	return &first, nil
}

// yamlError turns a yaml.v3 error into a *FileError, moving its line number out of the
// message.
func yamlError(err error) error {
	if m := yamlErrLineRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FileError{Line: line, Err: fmt.Errorf("parsing YAML: %s", m[2])}
	}
	return &FileError{Err: fmt.Errorf("parsing YAML: %w", err)}
}

// checkText refuses input whose byte positions could not be matched with yaml.v3's
// line and column numbers: anything but UTF-8, and line breaks other than LF and CRLF.
func checkText(data []byte) error {
	if !utf8.Valid(data) {
		return &FileError{Err: errors.New("the file is not UTF-8 text")}
	}
	line := 1
	for i := 0; i < len(data); i++ {
		switch b := data[i]; {
		case b == '\n':
			line++
		case b == '\r' && (i+1 == len(data) || data[i+1] != '\n'):
			return &FileError{Line: line, Err: errors.New("a carriage return without a line feed; use LF or CRLF line breaks")}
		case b == 0:
			return &FileError{Line: line, Err: errors.New("a NUL byte; the file is not text")}
		case b == 0xC2 && i+1 < len(data) && data[i+1] == 0x85,
			b == 0xE2 && i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xA8 || data[i+2] == 0xA9):
			return &FileError{Line: line, Err: errors.New("a Unicode line or paragraph separator (NEL, LS or PS); use LF or CRLF line breaks")}
		}
	}
	return nil
}

// indexImages checks the images value and records its entries.
func (s *source) indexImages() error {
	v := s.images
	ferr := func(line int, format string, args ...any) error {
		return &FileError{Line: line, Err: fmt.Errorf(format, args...)}
	}
	if n := findAnchorOrAlias(v); n != nil {
		return ferr(n.Line, "images: YAML anchors and aliases are not supported in images; write the entries out")
	}
	switch {
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null":
		return nil
	case v.Kind != yaml.SequenceNode:
		return ferr(v.Line, "images: must be a list, found a %s", kindName(v))
	}
	names := map[string]int{}
	for i, n := range v.Content {
		if n.Kind != yaml.MappingNode {
			return ferr(n.Line, "images[%d]: must be a mapping with a name, found a %s", i, kindName(n))
		}
		e := &entry{index: i, node: n, keys: map[string]int{}}
		for j := 0; j+1 < len(n.Content); j += 2 {
			k, val := n.Content[j], n.Content[j+1]
			if k.Kind != yaml.ScalarNode {
				return ferr(k.Line, "images[%d]: a key that is not a string", i)
			}
			if _, dup := e.keys[k.Value]; dup {
				return ferr(k.Line, "images[%d]: duplicate key %s", i, k.Value)
			}
			e.keys[k.Value] = j
			var dst *string
			switch k.Value {
			case keyName:
				dst = &e.image.Name
			case keyNewName:
				dst = &e.image.NewName
			case keyNewTag:
				dst = &e.image.NewTag
			case keyDigest:
				dst = &e.image.Digest
			case keyTagSuffix:
				dst = &e.image.TagSuffix
			default:
				continue
			}
			if val.Kind != yaml.ScalarNode {
				return ferr(val.Line, "images[%d].%s: must be a string, found a %s", i, k.Value, kindName(val))
			}
			if val.ShortTag() != "!!null" {
				*dst = val.Value
			}
		}
		if e.image.Name == "" {
			return ferr(n.Line, "images[%d]: entry has no name", i)
		}
		if first, dup := names[e.image.Name]; dup {
			return ferr(n.Line, "images[%d]: duplicate image name %q (also images[%d])", i, e.image.Name, first)
		}
		names[e.image.Name] = i
		s.entries = append(s.entries, e)
	}
	return nil
}

// entryNamed returns the entry for an image name, or nil.
func (s *source) entryNamed(name string) *entry {
	for _, e := range s.entries {
		if e.image.Name == name {
			return e
		}
	}
	return nil
}

func findAnchorOrAlias(n *yaml.Node) *yaml.Node {
	if n.Anchor != "" || n.Kind == yaml.AliasNode {
		return n
	}
	for _, c := range n.Content {
		if f := findAnchorOrAlias(c); f != nil {
			return f
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return "string"
		case "!!int", "!!float":
			return "number"
		case "!!bool":
			return "boolean"
		}
		return "scalar " + n.ShortTag()
	}
	return "document"
}

// --- byte positions ---------------------------------------------------------------

// layoutErr reports YAML that is valid but laid out in a way the byte editor does not
// handle, at the line of n.
func layoutErr(n *yaml.Node, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &FileError{Line: line, Err: fmt.Errorf(format, args...)}
}

// offset converts a node's 1-based line and (character-counted) column into a byte
// offset, or -1 when the position is outside the data.
func (s *source) offset(n *yaml.Node) int {
	if n.Line < 1 || n.Line > len(s.lineStart) || n.Column < 1 {
		return -1
	}
	i := s.lineStart[n.Line-1]
	if n.Line == 1 {
		i += s.bom
	}
	for c := 1; c < n.Column; c++ {
		if i >= len(s.data) || s.data[i] == '\n' {
			return -1
		}
		_, size := utf8.DecodeRune(s.data[i:])
		i += size
	}
	return i
}

// column returns the 0-based character column of a byte offset.
func (s *source) column(off int) int {
	start := s.lineOf(off)
	if start == 0 {
		start = s.bom
	}
	return utf8.RuneCount(s.data[start:off])
}

// lineOf returns the byte offset of the start of the line holding off.
func (s *source) lineOf(off int) int {
	i := bytes.LastIndexByte(s.data[:off], '\n')
	return i + 1
}

// skipProperties skips a tag or anchor (and the blanks after it) at off.
func (s *source) skipProperties(n *yaml.Node, off int) (int, error) {
	for off < len(s.data) && (s.data[off] == '!' || s.data[off] == '&') {
		for off < len(s.data) && !isBlank(s.data[off]) && s.data[off] != '\n' && s.data[off] != '\r' {
			off++
		}
		for off < len(s.data) && isBlank(s.data[off]) {
			off++
		}
		if off >= len(s.data) || s.data[off] == '\n' || s.data[off] == '\r' {
			return 0, layoutErr(n, "a tag or anchor on its own line is not supported here")
		}
	}
	return off, nil
}

// entryIndent returns the column at which the entries of the block mapping m start: the
// smallest column of the first non-blank character on the line of any of its keys. (A key
// written "?" on one line and its text on the next is indented more than the "?", so it
// does not lower the minimum below the entries' column.)
func (s *source) entryIndent(m *yaml.Node) int {
	indent := -1
	for i := 0; i < len(m.Content); i += 2 {
		off := s.offset(m.Content[i])
		if off < 0 {
			continue
		}
		start := s.lineOf(off)
		if start == 0 {
			start = s.bom
		}
		col := s.column(start + len(s.data[start:off]) - len(bytes.TrimLeft(s.data[start:off], " \t")))
		if indent < 0 || col < indent {
			indent = col
		}
	}
	return indent
}

// explicitKey reports whether the top-level key k is written with the explicit key
// indicator: "? key" on one line, or a "?" line (possibly with a comment) followed by the key
// on a later line. indent is the column of the mapping's entries (entryIndent): a "?" line
// indented deeper is the text of the previous entry's value, not an indicator.
func (s *source) explicitKey(k *yaml.Node, indent int) bool {
	off := s.offset(k)
	if off < 0 {
		return false
	}
	start := s.lineOf(off)
	before := strings.Trim(string(s.data[start:off]), " \t")
	if before != "" {
		return before == "?" // "? key"
	}
	for end := start - 1; end > 0; {
		lineStart := bytes.LastIndexByte(s.data[:end], '\n') + 1
		raw := string(s.data[lineStart:end])
		if lineStart == 0 {
			raw = strings.TrimPrefix(raw, "\uFEFF")
		}
		line := strings.Trim(raw, " \t\r")
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			end = lineStart - 1
			continue
		case line == "?" || strings.HasPrefix(line, "?") && isBlank(line[1]) && strings.HasPrefix(strings.TrimLeft(line[1:], " \t"), "#"):
			col := len(raw) - len(strings.TrimLeft(raw, " \t"))
			return indent < 0 || col <= indent
		}
		return false
	}
	return false
}

// isImplicitNull reports whether n is a null with no text at all (as in "newTag:").
func isImplicitNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "" && n.ShortTag() == "!!null" && n.Style == 0
}

// scalarSpan returns the byte range of a scalar's text, after any tag. An implicit null
// has no text; for it the range is empty and placed right after the colon of key (which
// must then be given).
func (s *source) scalarSpan(key, n *yaml.Node) (start, end int, err error) {
	if n.Kind != yaml.ScalarNode {
		return 0, 0, layoutErr(n, "expected a scalar")
	}
	if isImplicitNull(n) {
		if key == nil {
			return 0, 0, layoutErr(n, "an empty value here is not supported")
		}
		c, err := s.colonEnd(key)
		return c, c, err
	}
	off := s.offset(n)
	if off < 0 {
		return 0, 0, layoutErr(n, "cannot locate a value")
	}
	if off, err = s.skipProperties(n, off); err != nil {
		return 0, 0, err
	}
	d := s.data
	switch {
	case n.Style&yaml.DoubleQuotedStyle != 0:
		if d[off] != '"' {
			return 0, 0, layoutErr(n, "cannot locate a double-quoted value")
		}
		for i := off + 1; i < len(d); i++ {
			switch d[i] {
			case '\\':
				i++
			case '"':
				return off, i + 1, nil
			}
		}
		return 0, 0, layoutErr(n, "unterminated double-quoted value")
	case n.Style&yaml.SingleQuotedStyle != 0:
		if d[off] != '\'' {
			return 0, 0, layoutErr(n, "cannot locate a single-quoted value")
		}
		for i := off + 1; i < len(d); i++ {
			if d[i] == '\'' {
				if i+1 < len(d) && d[i+1] == '\'' {
					i++
					continue
				}
				return off, i + 1, nil
			}
		}
		return 0, 0, layoutErr(n, "unterminated single-quoted value")
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return 0, 0, layoutErr(n, "block scalars (| or >) are not supported here")
	}
	if !bytes.HasPrefix(d[off:], []byte(n.Value)) {
		return 0, 0, layoutErr(n, "a plain value spread over several lines is not supported here")
	}
	return off, off + len(n.Value), nil
}

// colonEnd returns the offset just after the ":" that follows a mapping key.
func (s *source) colonEnd(key *yaml.Node) (int, error) {
	_, end, err := s.scalarSpan(nil, key)
	if err != nil {
		return 0, err
	}
	for end < len(s.data) && isBlank(s.data[end]) {
		end++
	}
	if end >= len(s.data) || s.data[end] != ':' {
		return 0, layoutErr(key, "unsupported key syntax (expected \":\" after %q)", key.Value)
	}
	return end + 1, nil
}

// nodeEnd returns the offset just after the text of any node: the end of a scalar, or
// of the last element of a block collection, or the closing bracket of a flow one. key
// is the node's mapping key, if it has one (needed for implicit nulls).
func (s *source) nodeEnd(key, n *yaml.Node) (int, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		_, end, err := s.scalarSpan(key, n)
		return end, err
	case yaml.MappingNode, yaml.SequenceNode:
	default:
		return 0, layoutErr(n, "unsupported node")
	}
	var lastEnd int
	if c := n.Content; len(c) > 0 {
		var lastKey *yaml.Node
		if n.Kind == yaml.MappingNode {
			lastKey = c[len(c)-2]
		}
		end, err := s.nodeEnd(lastKey, c[len(c)-1])
		if err != nil {
			return 0, err
		}
		lastEnd = end
	} else {
		off := s.offset(n)
		if off < 0 {
			return 0, layoutErr(n, "cannot locate a value")
		}
		off, err := s.skipProperties(n, off)
		if err != nil {
			return 0, err
		}
		if off >= len(s.data) || (s.data[off] != '[' && s.data[off] != '{') {
			return 0, layoutErr(n, "cannot locate an empty collection")
		}
		lastEnd = off + 1
	}
	if n.Style&yaml.FlowStyle == 0 {
		return lastEnd, nil
	}
	closer := byte('}')
	if n.Kind == yaml.SequenceNode {
		closer = ']'
	}
	for i := lastEnd; i < len(s.data); i++ {
		switch c := s.data[i]; {
		case c == closer:
			return i + 1, nil
		case c == '#':
			for i < len(s.data) && s.data[i] != '\n' {
				i++
			}
		case isBlank(c) || c == '\n' || c == '\r' || c == ',':
		default:
			return 0, layoutErr(n, "cannot find the end of a flow collection")
		}
	}
	return 0, layoutErr(n, "unterminated flow collection")
}

// restIsTrivia reports whether only blanks or a comment follow off on its line.
func (s *source) restIsTrivia(off int) bool {
	for i := off; i < len(s.data); i++ {
		switch s.data[i] {
		case ' ', '\t', '\r':
		case '\n', '#':
			return true
		default:
			return false
		}
	}
	return true
}

// lineEnd returns the offset after the line break that ends off's line, and whether
// there was one (false at the end of a file without a final newline).
func (s *source) lineEnd(off int) (int, bool) {
	if i := bytes.IndexByte(s.data[off:], '\n'); i >= 0 {
		return off + i + 1, true
	}
	return len(s.data), false
}

func isBlank(b byte) bool { return b == ' ' || b == '\t' }

// --- scalar rendering --------------------------------------------------------------

var (
	// yaml11Special matches plain scalars that a YAML 1.1 reader (yaml.v2, and so
	// kustomize's own YAML-to-JSON step) resolves to something other than a string.
	yaml11Special = regexp.MustCompile(`^(?:` +
		`y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|` +
		`~|null|Null|NULL|` +
		`[-+]?0b[01_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+|` +
		`[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|` +
		`[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)` +
		`)$`)
)

// needsQuotes reports whether s, written as a plain scalar, would be read back as
// anything but the string s, by yaml.v3 (YAML 1.2) or by a YAML 1.1 reader.
func needsQuotes(s string) bool {
	if s == "" || yaml11Special.MatchString(s) {
		return true
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("k: "+s), &doc); err != nil || len(doc.Content) != 1 {
		return true
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode || len(m.Content) != 2 {
		return true
	}
	v := m.Content[1]
	return v.Kind != yaml.ScalarNode || v.Style != 0 || v.ShortTag() != "!!str" || v.Value != s
}

// quoteStyle is how a value is written.
type quoteStyle int

const (
	stylePlain quoteStyle = iota // plain, or double quotes when plain would not read back
	styleDouble
	styleSingle
)

func styleOf(n *yaml.Node) quoteStyle {
	switch {
	case n == nil:
		return stylePlain
	case n.Style&yaml.DoubleQuotedStyle != 0:
		return styleDouble
	case n.Style&yaml.SingleQuotedStyle != 0:
		return styleSingle
	}
	return stylePlain
}

// render writes a validated image value (only [A-Za-z0-9._/:@-] characters, so no
// escaping is ever needed) in the given style.
func render(v string, st quoteStyle) string {
	switch {
	case st == styleSingle:
		return "'" + v + "'"
	case st == styleDouble || needsQuotes(v):
		return `"` + v + `"`
	}
	return v
}

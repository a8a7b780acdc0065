package policy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// SetLock adds a lock to the policy file of the repo at root, or replaces the lock on the same
// environment and image, and reports whether the file changed: a lock with the same reason and
// by is left as it is (its time included), and the file is not written. Only the lock's own
// lines change (see EditLocks); a missing file is created.
func SetLock(root string, l Lock) (bool, error) {
	return editLocksFile(root, func(locks []Lock) ([]Lock, bool) {
		for i, old := range locks {
			if old.Environment == l.Environment && old.Image == l.Image {
				if old.Reason == l.Reason && old.By == l.By {
					return locks, false
				}
				locks[i] = l
				return locks, true
			}
		}
		return append(locks, l), true
	})
}

// RemoveLock removes the lock on image in env from the policy file of the repo at root; it
// reports false when there was none. Only the lock's own lines go (see EditLocks).
func RemoveLock(root, env, image string) (bool, error) {
	return editLocksFile(root, func(locks []Lock) ([]Lock, bool) {
		out := locks[:0]
		removed := false
		for _, l := range locks {
			if l.Environment == env && l.Image == image {
				removed = true
				continue
			}
			out = append(out, l)
		}
		return out, removed
	})
}

// newFileHeader starts a policy file that deliver creates.
const newFileHeader = "# deliver policy: see https://github.com/deliverhq/deliver#policy\n"

func editLocksFile(root string, edit func([]Lock) ([]Lock, bool)) (bool, error) {
	path := filepath.Join(root, FileName)
	data, err := readLimited(path)
	missing := errors.Is(err, os.ErrNotExist)
	if err != nil && !missing {
		return false, fmt.Errorf("%w %s: %v", ErrInvalid, FileName, err)
	}
	p, err := Parse(data)
	if err != nil {
		return false, err
	}
	locks, changed := edit(append([]Lock(nil), p.Locks...))
	if !changed {
		return false, nil
	}
	if missing {
		data = []byte(newFileHeader)
	}
	out, err := EditLocks(data, locks)
	if err != nil {
		return false, err
	}
	perm := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		perm = fi.Mode().Perm()
	}
	if err := os.WriteFile(path, out, perm); err != nil {
		return false, fmt.Errorf("writing %s: %w", FileName, err)
	}
	return true, nil
}

// EditLocks returns the policy file data with its locks replaced by locks, changing only the
// lines of the locks that differ: a lock that stays keeps its bytes (comments, quoting, order
// of keys); a removed lock's lines go; a new lock is appended after the last one with the
// indentation of its neighbours; a changed lock's lines are rewritten in place. The `locks:`
// key is added at the end of the file when missing and removed when no lock is left. Line
// endings (LF or CRLF) follow the file. Everything else in the file stays byte for byte.
//
// The result is parsed again and must hold exactly locks and the file's other settings; an
// edit that would not is refused with an error, and nothing is written.
func EditLocks(data []byte, locks []Lock) ([]byte, error) {
	before, err := Parse(data)
	if err != nil {
		return nil, err
	}
	nl := "\n"
	if bytes.Contains(data, []byte("\r\n")) {
		nl = "\r\n"
	}
	f := &lockFile{data: data, nl: nl}
	out, err := f.edit(locks)
	if err != nil {
		return nil, err
	}
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
		// A file without a final line break keeps going without one.
		out = bytes.TrimSuffix(out, []byte(nl))
	}
	after, err := Parse(out)
	if err != nil {
		return nil, fmt.Errorf("internal error: the edited %s does not parse: %w", FileName, err)
	}
	want := *before
	want.Locks = locks
	if len(want.Locks) == 0 {
		want.Locks = nil
	}
	if !samePolicy(after, &want) {
		return nil, fmt.Errorf("internal error: the edited %s does not hold the locks asked for", FileName)
	}
	return out, nil
}

func samePolicy(a, b *Policy) bool {
	norm := func(p *Policy) Policy {
		q := *p
		if len(q.Environments) == 0 {
			q.Environments = nil
		}
		if len(q.Locks) == 0 {
			q.Locks = nil
		}
		q.Locks = append([]Lock(nil), q.Locks...)
		for i := range q.Locks {
			q.Locks[i].At = q.Locks[i].At.UTC()
		}
		return q
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// lockFile is one edit of a policy file's bytes.
type lockFile struct {
	data []byte
	nl   string
	// lineStart[i] is the offset of line i+1 (1-based lines, as yaml.v3 counts them).
	lineStart []int
}

func (f *lockFile) edit(locks []Lock) ([]byte, error) {
	f.lineStart = []int{0}
	for i, b := range f.data {
		if b == '\n' {
			f.lineStart = append(f.lineStart, i+1)
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(f.data, &doc); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalid, FileName, err)
	}
	var top *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		top = doc.Content[0]
	}
	if top == nil || (top.Kind == yaml.ScalarNode && top.Tag == "!!null") {
		// Only comments (or nothing): add the key at the end.
		return f.appendKey(locks), nil
	}
	if top.Kind != yaml.MappingNode || top.Style&yaml.FlowStyle != 0 {
		return nil, fmt.Errorf("%w %s: the top level must be a block mapping (key: value lines) for deliver to edit its locks", ErrInvalid, FileName)
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "locks" {
			continue
		}
		key, val := top.Content[i], top.Content[i+1]
		if val.Kind == yaml.SequenceNode && val.Style&yaml.FlowStyle == 0 && len(val.Content) > 0 {
			if len(locks) == 0 {
				return f.cut(f.lineOffset(key.Line), f.contentEnd(key.Line, f.nextKeyLine(top, i))), nil
			}
			return f.editSequence(val, locks, f.nextKeyLine(top, i))
		}
		// An empty, null or flow value: the key and its value are written again as a block.
		start, end := f.lineOffset(key.Line), f.contentEnd(key.Line, f.nextKeyLine(top, i))
		if len(locks) == 0 {
			return f.cut(start, end), nil
		}
		return f.splice(start, end, f.keyText(locks)), nil
	}
	if len(locks) == 0 {
		return f.data, nil
	}
	return f.appendKey(locks), nil
}

// editSequence edits the items of a block sequence of locks: items that stay keep their
// bytes, removed ones are cut, changed ones rewritten in place, new ones appended.
func (f *lockFile) editSequence(seq *yaml.Node, locks []Lock, endLine int) ([]byte, error) {
	type span struct{ start, end int }
	items := make([]span, len(seq.Content))
	old := make([]Lock, len(seq.Content))
	for i, item := range seq.Content {
		start := f.dashLineStart(item)
		limit := endLine
		if i+1 < len(seq.Content) {
			limit = f.lineOf(f.dashLineStart(seq.Content[i+1]))
		}
		items[i] = span{start, f.contentEnd(f.lineOf(start), limit)}
		if err := item.Decode(&old[i]); err != nil {
			return nil, fmt.Errorf("%w %s: locks[%d]: %v", ErrInvalid, FileName, i, err)
		}
	}
	dashCol, keyCol := seq.Content[0].Column-2, seq.Content[0].Column-1
	if d := bytes.IndexByte(f.data[items[0].start:items[0].end], '-'); d >= 0 {
		dashCol = d
	}
	var b bytes.Buffer
	pos := 0
	next := 0 // next wanted lock not yet placed
	for i, s := range items {
		b.Write(f.data[pos:s.start])
		pos = s.end
		k := indexLock(locks[next:], old[i].Environment, old[i].Image)
		switch {
		case k < 0:
			// removed: its bytes are not copied
		case k > 0:
			return nil, fmt.Errorf("internal error: locks reordered in %s", FileName)
		case sameLock(old[i], locks[next]):
			b.Write(f.data[s.start:s.end])
			next++
		default:
			b.WriteString(f.itemText(locks[next], dashCol, keyCol))
			next++
		}
	}
	if next < len(locks) {
		last := items[len(items)-1]
		b.Write(f.data[pos:last.end])
		pos = last.end
		if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
			b.WriteString(f.nl)
		}
		for _, l := range locks[next:] {
			b.WriteString(f.itemText(l, dashCol, keyCol))
		}
	}
	b.Write(f.data[pos:])
	return b.Bytes(), nil
}

func indexLock(locks []Lock, env, image string) int {
	for i, l := range locks {
		if l.Environment == env && l.Image == image {
			return i
		}
	}
	return -1
}

func sameLock(a, b Lock) bool {
	return a.Environment == b.Environment && a.Image == b.Image && a.Reason == b.Reason && a.By == b.By && a.At.Equal(b.At)
}

// appendKey adds a `locks:` section at the end of the file.
func (f *lockFile) appendKey(locks []Lock) []byte {
	var b bytes.Buffer
	b.Write(f.data)
	if b.Len() > 0 && !bytes.HasSuffix(f.data, []byte("\n")) {
		b.WriteString(f.nl)
	}
	b.WriteString(f.keyText(locks))
	return b.Bytes()
}

// keyText renders `locks:` with its items, the way the README shows it.
func (f *lockFile) keyText(locks []Lock) string {
	var b strings.Builder
	b.WriteString("locks:" + f.nl)
	for _, l := range locks {
		b.WriteString(f.itemText(l, 2, 4))
	}
	return b.String()
}

// itemText renders one lock as a block sequence item, its dash at dashCol and its keys at
// keyCol.
func (f *lockFile) itemText(l Lock, dashCol, keyCol int) string {
	type kv struct{ k, v string }
	fields := []kv{{"environment", l.Environment}, {"image", l.Image}}
	if l.Reason != "" {
		fields = append(fields, kv{"reason", l.Reason})
	}
	if l.By != "" {
		fields = append(fields, kv{"by", l.By})
	}
	if !l.At.IsZero() {
		fields = append(fields, kv{"at", l.At.UTC().Format(time.RFC3339)})
	}
	if keyCol <= dashCol {
		keyCol = dashCol + 2
	}
	var b strings.Builder
	for i, field := range fields {
		if i == 0 {
			b.WriteString(strings.Repeat(" ", dashCol) + "-" + strings.Repeat(" ", keyCol-dashCol-1))
		} else {
			b.WriteString(strings.Repeat(" ", keyCol))
		}
		b.WriteString(field.k + ": " + scalar(field.v, field.k == "at") + f.nl)
	}
	return b.String()
}

// scalar renders s as a one-line YAML scalar, quoted where YAML would read it as something
// other than the string s (a number, a boolean, a timestamp when it is not one, ...).
func scalar(s string, timestamp bool) string {
	if timestamp {
		return s
	}
	n := yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if strings.ContainsAny(s, "\n\r") {
		n.Style = yaml.DoubleQuotedStyle
	}
	out, err := yaml.Marshal(&n)
	if err != nil {
		return fmt.Sprintf("%q", s)
	}
	return strings.TrimRight(string(out), "\n")
}

func (f *lockFile) splice(start, end int, text string) []byte {
	out := make([]byte, 0, len(f.data)-(end-start)+len(text))
	out = append(out, f.data[:start]...)
	out = append(out, text...)
	return append(out, f.data[end:]...)
}

// cut removes data[start:end]. When that runs to the end of a file without a final line
// break, the line break before it goes too, so the file still ends without one.
func (f *lockFile) cut(start, end int) []byte {
	if end == len(f.data) && len(f.data) > 0 && f.data[len(f.data)-1] != '\n' {
		start -= len(f.nl)
		if start < 0 || string(f.data[start:start+len(f.nl)]) != f.nl {
			start += len(f.nl)
		}
	}
	return f.splice(start, end, "")
}

// lineOffset is the offset where 1-based line starts (the end of data past the last line).
func (f *lockFile) lineOffset(line int) int {
	if line-1 < len(f.lineStart) {
		return f.lineStart[line-1]
	}
	return len(f.data)
}

// lineOf is the 1-based line holding offset off.
func (f *lockFile) lineOf(off int) int {
	line := 1
	for i, s := range f.lineStart {
		if s <= off {
			line = i + 1
		}
	}
	return line
}

// dashLineStart is the start of the line holding the dash of a block sequence item: the
// item's own line, or the line above when the dash stands alone.
func (f *lockFile) dashLineStart(item *yaml.Node) int {
	start := f.lineOffset(item.Line)
	col := start + item.Column - 1
	if bytes.ContainsRune(f.data[start:col], '-') {
		return start
	}
	for line := item.Line - 1; line >= 1; line-- {
		text := bytes.TrimSpace(f.data[f.lineOffset(line):f.lineOffset(line+1)])
		if bytes.Equal(text, []byte("-")) {
			return f.lineOffset(line)
		}
		if len(text) > 0 && text[0] != '#' {
			break
		}
	}
	return start
}

// nextKeyLine is the line of the top-level key after key i (one past the last line when it is
// the last key).
func (f *lockFile) nextKeyLine(top *yaml.Node, i int) int {
	if i+2 < len(top.Content) {
		return top.Content[i+2].Line
	}
	return len(f.lineStart) + 1
}

// contentEnd is the offset just past the last line in [from, limit) that holds content (not
// blank, not only a comment, not a document marker): trailing blank lines and comments stay
// where they are.
func (f *lockFile) contentEnd(from, limit int) int {
	end := f.lineOffset(from + 1)
	for line := from + 1; line < limit; line++ {
		text := bytes.TrimSpace(f.data[f.lineOffset(line):f.lineOffset(line+1)])
		if len(text) == 0 || text[0] == '#' || bytes.Equal(text, []byte("...")) || bytes.Equal(text, []byte("---")) {
			continue
		}
		end = f.lineOffset(line + 1)
	}
	return end
}

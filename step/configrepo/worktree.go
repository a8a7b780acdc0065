package configrepo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// worktree is the files of one commit written to a directory, without an index: it remembers
// what it wrote (blob, mode, and the file's identity, size and time), so that moving to another
// commit rewrites only what differs or was touched, and so that a commit of edited paths can
// be built from the parent's trees directly (commitTree), never reading the files nobody
// changed.
//
// A blob larger than maxFile is not written: in its place is a sparse file of its size (or, if
// the server left the blob out and its size is unknown, of maxFile+1 bytes) with no data. Every
// reader of the clone refuses a file over its limit by its size before reading it, and
// maxFile is at least the largest of those limits, so a placeholder is never read as content;
// commitTree keeps the blob of a placeholder nobody changed.
type worktree struct {
	root    string
	fs      billy.Filesystem // writes, with symlinks made the way go-git's checkout makes them
	st      *filesystem.Storage
	maxFile int64
	// sizes of blobs left out of a fetch that are known (dropLargeBlobs knows them).
	sizes map[plumbing.Hash]int64
	files map[string]written // slash-separated path -> what was written
}

// written is one file the worktree wrote.
type written struct {
	hash    plumbing.Hash
	mode    filemode.FileMode
	omitted bool        // a placeholder: the blob is larger than maxFile
	info    os.FileInfo // Lstat right after writing
}

func newWorktree(root string, st *filesystem.Storage, maxFile int64) *worktree {
	return &worktree{
		root: root, fs: osfs.New(root), st: st, maxFile: maxFile,
		sizes: map[plumbing.Hash]int64{}, files: map[string]written{},
	}
}

// treeFile is a file of a commit's tree.
type treeFile struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// list lists the files (blobs, symlinks, submodules) of tree, by slash-separated path.
func (w *worktree) list(tree plumbing.Hash) (map[string]treeFile, error) {
	out := map[string]treeFile{}
	var walk func(h plumbing.Hash, prefix string) error
	walk = func(h plumbing.Hash, prefix string) error {
		t, err := object.GetTree(w.st, h)
		if err != nil {
			return fmt.Errorf("reading tree %s (%s): %w", h, orRoot(prefix), err)
		}
		for _, e := range t.Entries {
			if err := checkEntryName(e.Name); err != nil {
				return fmt.Errorf("tree %s (%s): %w", h, orRoot(prefix), err)
			}
			p := path.Join(prefix, e.Name)
			if e.Mode == filemode.Dir {
				if err := walk(e.Hash, p); err != nil {
					return err
				}
				continue
			}
			out[p] = treeFile{hash: e.Hash, mode: e.Mode}
		}
		return nil
	}
	return out, walk(tree, "")
}

func orRoot(p string) string {
	if p == "" {
		return "the root"
	}
	return p
}

// checkEntryName refuses tree entry names that could escape the directory or stand for the
// repository itself.
func checkEntryName(name string) error {
	switch {
	case name == "", name == ".", name == "..", strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("invalid entry name %q", name)
	case strings.EqualFold(name, ".git"):
		return fmt.Errorf("entry named %q", name)
	}
	return nil
}

// checkout makes the directory hold tree: files that are not in it are removed, files that
// differ from it, or whose disk state is not what was written (an edit), or that are in
// touched (the last edit's paths), are written again.
func (w *worktree) checkout(tree plumbing.Hash, touched []string) error {
	want, err := w.list(tree)
	if err != nil {
		return err
	}
	force := map[string]bool{}
	for _, p := range touched {
		if p, err := cleanPath(p); err == nil {
			force[p] = true
			if _, ok := want[p]; !ok {
				if err := w.remove(p); err != nil {
					return err
				}
			}
		}
	}
	for p := range w.files {
		if _, ok := want[p]; !ok {
			if err := w.remove(p); err != nil {
				return err
			}
		}
	}
	paths := make([]string, 0, len(want))
	for p := range want {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	files := make(map[string]written, len(want))
	for _, p := range paths {
		f := want[p]
		if old, ok := w.files[p]; ok && !force[p] && old.hash == f.hash && old.mode == f.mode && w.unchanged(p, old) {
			files[p] = old
			continue
		}
		wr, err := w.write(p, f)
		if err != nil {
			return err
		}
		files[p] = wr
	}
	w.files = files
	return nil
}

// restore writes paths back as they are in tree (removing those it does not hold): the
// undoing of an edit that failed half-way, so that the next edit starts from tree.
func (w *worktree) restore(tree plumbing.Hash, paths []string) error {
	t, err := object.GetTree(w.st, tree)
	if err != nil {
		return fmt.Errorf("reading tree %s: %w", tree, err)
	}
	for _, p := range paths {
		p, err := cleanPath(p)
		if err != nil {
			return err
		}
		e, err := t.FindEntry(p)
		switch {
		case errors.Is(err, object.ErrEntryNotFound), errors.Is(err, object.ErrDirectoryNotFound):
			if err := w.remove(p); err != nil {
				return err
			}
			delete(w.files, p)
		case err != nil:
			return fmt.Errorf("reading %s in tree %s: %w", p, tree, err)
		case e.Mode == filemode.Dir:
			return fmt.Errorf("restoring %s: it is a directory in tree %s", p, tree)
		default:
			wr, err := w.write(p, treeFile{hash: e.Hash, mode: e.Mode})
			if err != nil {
				return err
			}
			w.files[p] = wr
		}
	}
	return nil
}

// unchanged reports whether the file at p is still the one written.
func (w *worktree) unchanged(p string, old written) bool {
	fi, err := os.Lstat(w.abs(p))
	return err == nil && os.SameFile(fi, old.info) && fi.Size() == old.info.Size() &&
		fi.ModTime().Equal(old.info.ModTime()) && fi.Mode() == old.info.Mode()
}

func (w *worktree) abs(p string) string { return filepath.Join(w.root, filepath.FromSlash(p)) }

// remove deletes p and then the directories it leaves empty.
func (w *worktree) remove(p string) error {
	if err := os.RemoveAll(w.abs(p)); err != nil {
		return fmt.Errorf("removing %s from the work tree: %w", p, err)
	}
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if os.Remove(w.abs(d)) != nil {
			break // not empty
		}
	}
	return nil
}

// write writes the file f at p, replacing whatever is there.
func (w *worktree) write(p string, f treeFile) (written, error) {
	full := w.abs(p)
	if err := w.clearWay(p); err != nil {
		return written{}, err
	}
	wr := written{hash: f.hash, mode: f.mode}
	switch f.mode {
	case filemode.Submodule:
		if err := os.MkdirAll(full, 0o755); err != nil {
			return written{}, fmt.Errorf("writing %s: %w", p, err)
		}
	case filemode.Symlink:
		target, err := w.readSmallBlob(f.hash, 4096)
		if err != nil {
			return written{}, fmt.Errorf("writing %s: %w", p, err)
		}
		if err := w.fs.Symlink(string(target), p); err != nil {
			return written{}, fmt.Errorf("writing %s: %w", p, err)
		}
	default:
		perm := os.FileMode(0o644)
		if f.mode == filemode.Executable {
			perm = 0o755
		}
		omitted, err := w.writeBlob(p, full, f.hash, perm)
		if err != nil {
			return written{}, fmt.Errorf("writing %s: %w", p, err)
		}
		wr.omitted = omitted
	}
	fi, err := os.Lstat(full)
	if err != nil {
		return written{}, fmt.Errorf("writing %s: %w", p, err)
	}
	wr.info = fi
	return wr, nil
}

// clearWay removes what stands where p or its parent directories must go: a file or symlink
// where a directory must be (never followed), a directory or anything else at p.
func (w *worktree) clearWay(p string) error {
	parts := strings.Split(p, "/")
	for i := 1; i < len(parts); i++ {
		d := w.abs(strings.Join(parts[:i], "/"))
		fi, err := os.Lstat(d)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if !fi.IsDir() {
			if err := os.Remove(d); err != nil {
				return fmt.Errorf("writing %s: %w", p, err)
			}
			break
		}
	}
	if err := os.RemoveAll(w.abs(p)); err != nil {
		return fmt.Errorf("writing %s: %w", p, err)
	}
	return nil
}

// writeBlob writes blob h to full, or a placeholder when the blob is larger than maxFile or
// was left out of the fetch (omitted is then true).
func (w *worktree) writeBlob(p, full string, h plumbing.Hash, perm os.FileMode) (omitted bool, err error) {
	size, err := w.st.EncodedObjectSize(h)
	missing := errors.Is(err, plumbing.ErrObjectNotFound)
	if err != nil && !missing {
		return false, fmt.Errorf("reading the size of blob %s: %w", h, err)
	}
	if missing {
		// The server left it out: it is larger than the filter's limit.
		size = w.maxFile + 1
		if s, ok := w.sizes[h]; ok {
			size = s
		}
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return false, err
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return false, err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if missing || size > w.maxFile {
		return true, f.Truncate(size)
	}
	r, err := w.openBlob(h)
	if err != nil {
		return false, err
	}
	defer r.Close()
	n, err := io.Copy(f, io.LimitReader(r, size+1))
	if err != nil {
		return false, err
	}
	if n != size {
		return false, fmt.Errorf("blob %s holds %d bytes, its header says %d", h, n, size)
	}
	return false, nil
}

// readSmallBlob reads blob h, refusing one larger than max.
func (w *worktree) readSmallBlob(h plumbing.Hash, max int64) ([]byte, error) {
	size, err := w.st.EncodedObjectSize(h)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", h, err)
	}
	if size > max {
		return nil, fmt.Errorf("blob %s is %d bytes, more than the %d a symlink may be", h, size, max)
	}
	r, err := w.openBlob(h)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, max))
}

// openBlob opens blob h for reading (streamed from disk when it is large).
func (w *worktree) openBlob(h plumbing.Hash) (io.ReadCloser, error) {
	obj, err := w.st.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", h, err)
	}
	r, err := obj.Reader()
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", h, err)
	}
	return r, nil
}

// cleanPath turns an edit's path (relative to the work tree) into a clean slash-separated one,
// refusing one that leaves the tree.
func cleanPath(p string) (string, error) {
	c := path.Clean(filepath.ToSlash(p))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") || path.IsAbs(c) {
		return "", fmt.Errorf("path %q is not inside the work tree", p)
	}
	for _, part := range strings.Split(c, "/") {
		if err := checkEntryName(part); err != nil {
			return "", fmt.Errorf("path %q: %w", p, err)
		}
	}
	return c, nil
}

// change is the new state of one path in a commit; a zero hash deletes it.
type change struct {
	hash plumbing.Hash
	mode filemode.FileMode
}

// commitTree builds the tree of parent with paths replaced by what is on disk now (a path
// missing from disk is deleted), writing the new blobs and trees to storage. Only the trees on
// the way to a changed path are read; no other file is read or hashed. It returns the new
// tree and the objects it made (for the push).
func (w *worktree) commitTree(parent plumbing.Hash, paths []string) (plumbing.Hash, []plumbing.Hash, error) {
	root := &dirChange{}
	var made []plumbing.Hash
	for _, raw := range paths {
		p, err := cleanPath(raw)
		if err != nil {
			return plumbing.ZeroHash, nil, err
		}
		c, keep, blob, err := w.changeFor(p)
		if err != nil {
			return plumbing.ZeroHash, nil, err
		}
		if keep {
			continue
		}
		if blob {
			made = append(made, c.hash)
		}
		root.add(strings.Split(p, "/"), c)
	}
	tree, trees, err := w.applyChanges(parent, root, "")
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	if tree.IsZero() {
		// Everything was deleted: git's empty tree.
		tree, err = w.writeTree(nil)
		if err != nil {
			return plumbing.ZeroHash, nil, err
		}
		trees = append(trees, tree)
	}
	return tree, append(made, trees...), nil
}

// changeFor reads the disk state of p: keep is true for a placeholder that is as it was
// written (its blob stays); blob is true when a blob was written for it.
func (w *worktree) changeFor(p string) (c change, keep, blob bool, err error) {
	full := w.abs(p)
	fi, err := os.Lstat(full)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return change{}, false, false, nil
	case err != nil:
		return change{}, false, false, fmt.Errorf("reading %s: %w", p, err)
	case fi.IsDir():
		return change{}, false, false, fmt.Errorf("committing %s: it is a directory", p)
	}
	if old, ok := w.files[p]; ok && old.omitted {
		if w.unchanged(p, old) {
			return change{}, true, false, nil
		}
		// Whatever was written there was made from the placeholder, not the file.
		return change{}, false, false, fmt.Errorf("committing %s: the file is larger than %d bytes, so the clone holds a placeholder in its place; it cannot be edited", p, w.maxFile)
	}
	var h plumbing.Hash
	mode := filemode.Regular
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(full)
		if err != nil {
			return change{}, false, false, fmt.Errorf("reading %s: %w", p, err)
		}
		mode = filemode.Symlink
		h, err = w.writeBlobFrom(strings.NewReader(target), int64(len(target)), func() (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(target)), nil
		})
		if err != nil {
			return change{}, false, false, fmt.Errorf("committing %s: %w", p, err)
		}
	case fi.Mode().IsRegular():
		if fi.Mode()&0o111 != 0 {
			mode = filemode.Executable
		}
		f, err := os.Open(full)
		if err != nil {
			return change{}, false, false, fmt.Errorf("reading %s: %w", p, err)
		}
		h, err = w.writeBlobFrom(f, fi.Size(), func() (io.ReadCloser, error) { return os.Open(full) })
		_ = f.Close()
		if err != nil {
			return change{}, false, false, fmt.Errorf("committing %s: %w", p, err)
		}
	default:
		return change{}, false, false, fmt.Errorf("committing %s: not a regular file or symlink (%s)", p, fi.Mode())
	}
	return change{hash: h, mode: mode}, false, true, nil
}

// writeBlobFrom hashes size bytes from r and stores them as a blob (read again through open),
// streaming, unless storage has it already.
func (w *worktree) writeBlobFrom(r io.Reader, size int64, open func() (io.ReadCloser, error)) (plumbing.Hash, error) {
	hasher := plumbing.NewHasher(plumbing.BlobObject, size)
	n, err := io.Copy(hasher, io.LimitReader(r, size+1))
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if n != size {
		return plumbing.ZeroHash, fmt.Errorf("the file changed while it was read (%d bytes, then %d)", size, n)
	}
	h := hasher.Sum()
	if w.st.HasEncodedObject(h) == nil {
		return h, nil
	}
	if _, err := w.st.SetEncodedObject(&streamedBlob{hash: h, size: size, open: open}); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("storing blob %s: %w", h, err)
	}
	return h, nil
}

// streamedBlob is a blob whose content is read from a file when storage writes it.
type streamedBlob struct {
	hash plumbing.Hash
	size int64
	open func() (io.ReadCloser, error)
}

func (b *streamedBlob) Hash() plumbing.Hash             { return b.hash }
func (b *streamedBlob) Type() plumbing.ObjectType       { return plumbing.BlobObject }
func (b *streamedBlob) SetType(plumbing.ObjectType)     {}
func (b *streamedBlob) Size() int64                     { return b.size }
func (b *streamedBlob) SetSize(int64)                   {}
func (b *streamedBlob) Reader() (io.ReadCloser, error)  { return b.open() }
func (b *streamedBlob) Writer() (io.WriteCloser, error) { return nil, errors.New("read-only blob") }

var _ plumbing.EncodedObject = (*streamedBlob)(nil)

// dirChange is the changes below one directory of a commit.
type dirChange struct {
	files map[string]change
	dirs  map[string]*dirChange
}

func (d *dirChange) add(parts []string, c change) {
	if len(parts) == 1 {
		if d.files == nil {
			d.files = map[string]change{}
		}
		d.files[parts[0]] = c
		return
	}
	if d.dirs == nil {
		d.dirs = map[string]*dirChange{}
	}
	sub := d.dirs[parts[0]]
	if sub == nil {
		sub = &dirChange{}
		d.dirs[parts[0]] = sub
	}
	sub.add(parts[1:], c)
}

// applyChanges returns the tree h (zero: none yet) with d's changes, writing new trees; a tree
// left empty is dropped (zero hash), as git does.
func (w *worktree) applyChanges(h plumbing.Hash, d *dirChange, prefix string) (plumbing.Hash, []plumbing.Hash, error) {
	entries := map[string]object.TreeEntry{}
	if !h.IsZero() {
		t, err := object.GetTree(w.st, h)
		if err != nil {
			return plumbing.ZeroHash, nil, fmt.Errorf("reading tree %s (%s): %w", h, orRoot(prefix), err)
		}
		for _, e := range t.Entries {
			entries[e.Name] = e
		}
	}
	var made []plumbing.Hash
	for name, c := range d.files {
		if c.hash.IsZero() {
			delete(entries, name)
			continue
		}
		entries[name] = object.TreeEntry{Name: name, Mode: c.mode, Hash: c.hash}
	}
	for name, sub := range d.dirs {
		var base plumbing.Hash
		if e, ok := entries[name]; ok && e.Mode == filemode.Dir {
			base = e.Hash
		}
		nh, subMade, err := w.applyChanges(base, sub, path.Join(prefix, name))
		if err != nil {
			return plumbing.ZeroHash, nil, err
		}
		made = append(made, subMade...)
		if nh.IsZero() {
			if e, ok := entries[name]; ok && e.Mode == filemode.Dir {
				delete(entries, name)
			}
			continue
		}
		entries[name] = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: nh}
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, made, nil
	}
	list := make([]object.TreeEntry, 0, len(entries))
	for _, e := range entries {
		list = append(list, e)
	}
	nh, err := w.writeTree(list)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	if nh != h {
		made = append(made, nh)
	}
	return nh, made, nil
}

// writeTree stores a tree of entries (sorted the way git sorts them) and returns its hash.
func (w *worktree) writeTree(entries []object.TreeEntry) (plumbing.Hash, error) {
	sort.Sort(object.TreeEntrySorter(entries))
	t := &object.Tree{Entries: entries}
	obj := w.st.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encoding a tree: %w", err)
	}
	if w.st.HasEncodedObject(obj.Hash()) == nil {
		return obj.Hash(), nil
	}
	h, err := w.st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("storing a tree: %w", err)
	}
	return h, nil
}

package kustomize

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// A Builder renders overlays as Build does, and remembers the last build that took the fast
// image path (fastImages): the overlay rendered without its images:, and everything that
// build read from the file system. The next build of the same overlay whose reads all come
// out the same (every file read has the same content, every listing and existence check the
// same answer) reuses it, and only applies the images again. kustomize's result depends on
// nothing else (plugins, exec functions, Helm and remote resources are off, and the fast path
// excludes buildMetadata), so the output is the same bytes a full build gives;
// TestBuilderReusesOnlyWhatHolds pins it.
//
// This is for a run that renders one overlay many times while only its images change: a
// deliver run landing a queue of other runs' changes renders each on top of the last. A
// build that read a file through Open or walked a tree is not remembered. The zero Builder
// is ready to use; a nil *Builder builds without remembering.
type Builder struct {
	mu   sync.Mutex
	last *memo
}

// memo is one remembered build.
type memo struct {
	dir string        // the overlay's resolved directory
	rm  resmap.ResMap // the build without images:, never handed out (copies are)
	obs []observation
	// shapesChecked: the image filters of an entry ran on every resource of a copy of rm
	// without failing, so a later copy need not be visited whole again (setImages).
	shapesChecked bool
}

// Build renders the overlay as the package-level Build does.
func (b *Builder) Build(root, overlay string) (resmap.ResMap, error) {
	rm, err := b.build(root, overlay)
	return rm, wrapBuild(overlay, err)
}

// fsOp is a read of the build file system that a memo can replay.
type fsOp int

const (
	opReadFile fsOp = iota
	opIsDir
	opExists
	opReadDir
	opGlob
	opCleanedAbs
)

// observation is one read a build made and what it saw, encoded by observe.
type observation struct {
	op  fsOp
	arg string
	saw string
}

// holds reports whether every read of the memo's build sees the same on fsys now.
func (m *memo) holds(fsys *confinedFS) bool {
	for _, o := range m.obs {
		if observe(fsys, o.op, o.arg) != o.saw {
			return false
		}
	}
	return true
}

// observe makes the read op(arg) on fsys and encodes what it returned.
func observe(fsys *confinedFS, op fsOp, arg string) string {
	switch op {
	case opReadFile:
		data, err := fsys.ReadFile(arg)
		return sawFile(data, err)
	case opIsDir:
		return strconv.FormatBool(fsys.IsDir(arg))
	case opExists:
		return strconv.FormatBool(fsys.Exists(arg))
	case opReadDir:
		names, err := fsys.ReadDir(arg)
		return sawList(names, err)
	case opGlob:
		names, err := fsys.Glob(arg)
		return sawList(names, err)
	case opCleanedAbs:
		d, f, err := fsys.CleanedAbs(arg)
		return sawList([]string{string(d), f}, err)
	}
	return "?"
}

func sawFile(data []byte, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func sawList(names []string, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	return strconv.Itoa(len(names)) + "\x00" + strings.Join(names, "\x00")
}

// recordingFS is a confinedFS that records every read a build makes (see Builder). A read it
// cannot replay (Open, Walk) marks the build as not to be remembered.
type recordingFS struct {
	*confinedFS
	obs    []observation
	seen   map[obsKey]bool
	opaque bool
}

// obsKey is a read, for recordingFS to record it once: kustomize asks some more than once.
type obsKey struct {
	op  fsOp
	arg string
}

var _ filesys.FileSystem = (*recordingFS)(nil)

func (r *recordingFS) saw(op fsOp, arg, saw string) {
	if r.seen[obsKey{op, arg}] {
		return // the build's file system does not change while it runs
	}
	if r.seen == nil {
		r.seen = map[obsKey]bool{}
	}
	r.seen[obsKey{op, arg}] = true
	r.obs = append(r.obs, observation{op: op, arg: arg, saw: saw})
}

// ReadFile reads p and records a digest of what it read.
func (r *recordingFS) ReadFile(p string) ([]byte, error) {
	data, err := r.confinedFS.ReadFile(p)
	r.saw(opReadFile, p, sawFile(data, err))
	return data, err
}

// IsDir reports whether p is a directory and records it.
func (r *recordingFS) IsDir(p string) bool {
	ok := r.confinedFS.IsDir(p)
	r.saw(opIsDir, p, strconv.FormatBool(ok))
	return ok
}

// Exists reports whether p exists and records it.
func (r *recordingFS) Exists(p string) bool {
	ok := r.confinedFS.Exists(p)
	r.saw(opExists, p, strconv.FormatBool(ok))
	return ok
}

// ReadDir lists p and records the listing.
func (r *recordingFS) ReadDir(p string) ([]string, error) {
	names, err := r.confinedFS.ReadDir(p)
	r.saw(opReadDir, p, sawList(names, err))
	return names, err
}

// Glob matches pattern and records the matches.
func (r *recordingFS) Glob(pattern string) ([]string, error) {
	names, err := r.confinedFS.Glob(pattern)
	r.saw(opGlob, pattern, sawList(names, err))
	return names, err
}

// CleanedAbs resolves p and records the result.
func (r *recordingFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	d, f, err := r.confinedFS.CleanedAbs(p)
	r.saw(opCleanedAbs, p, sawList([]string{string(d), f}, err))
	return d, f, err
}

// Open opens p; the build is not remembered (what is read through the file is not seen).
func (r *recordingFS) Open(p string) (filesys.File, error) {
	r.opaque = true
	return r.confinedFS.Open(p)
}

// Walk walks p; the build is not remembered.
func (r *recordingFS) Walk(p string, walkFn filepath.WalkFunc) error {
	r.opaque = true
	return r.confinedFS.Walk(p, walkFn)
}

// recall returns a copy of the remembered build of the overlay in dir, and the memo it came
// from, if it still holds on fsys.
func (b *Builder) recall(dir string, fsys *confinedFS) (resmap.ResMap, *memo) {
	if b == nil {
		return nil, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil || b.last.dir != dir || !b.last.holds(fsys) {
		return nil, nil
	}
	return b.last.rm.DeepCopy(), b.last
}

// remember keeps a copy of rm, the build of the overlay in dir that made the reads rec saw,
// and returns its memo (nil when it is not kept).
func (b *Builder) remember(dir string, rec *recordingFS, rm resmap.ResMap) *memo {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = nil
	if !rec.opaque {
		b.last = &memo{dir: dir, rm: rm.DeepCopy(), obs: rec.obs}
	}
	return b.last
}

// shapesChecked reports whether m's resources passed a whole visit of the image filters.
func (b *Builder) shapesChecked(m *memo) bool {
	if m == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return m.shapesChecked
}

// markShapesChecked records that a copy of m's resources passed a whole visit of the image
// filters (setImages).
func (b *Builder) markShapesChecked(m *memo) {
	if m == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m.shapesChecked = true
}

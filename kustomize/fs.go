package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// confinedFS is the file system builds see: the disk, read-only, and confined to root.
// Every path is made absolute and its symlinks resolved (for a path that does not exist
// yet, those of its longest existing parent) before it is used, and a path that then
// lies outside root is refused with an error wrapping ErrOutsideRoot (IsDir and Exists
// report false for it, Glob and Walk leave it out or stop). Reads go to the resolved path,
// not the path asked for: the disk would follow a symlink before a ".." that the
// resolution cleaned away as text. Writes are refused outright: rendering an overlay never
// needs them.
type confinedFS struct {
	root string // absolute, symlinks resolved
	disk filesys.FileSystem
	// replaced maps resolved paths to the content ReadFile returns for them instead of
	// the disk's (see withContent); Open refuses them.
	replaced map[string][]byte
	// real, if not nil, remembers the paths resolve followed, shared with copies
	// (withContent); see forOneBuild.
	real *realPaths
}

// realPaths maps absolute paths that exist to the paths they resolve to.
type realPaths struct {
	mu sync.Mutex
	m  map[string]string
}

var _ filesys.FileSystem = (*confinedFS)(nil)

// newConfinedFS confines a file system to the existing directory root.
func newConfinedFS(root string) (*confinedFS, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolving the repository root %s: %w", root, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("resolving the repository root %s: %w", root, err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("resolving the repository root %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("the repository root %s is not a directory", root)
	}
	return &confinedFS{root: real, disk: filesys.MakeFsOnDisk()}, nil
}

// forOneBuild makes c remember the paths it resolves (see evalSymlinks), for a file system
// that serves one build: deliver writes nothing to the tree while a build runs, and a
// confinedFS that outlives its build must not remember (a directory swapped for a symlink
// out of the repo after it was resolved would be read through).
func (c *confinedFS) forOneBuild() *confinedFS {
	c.real = &realPaths{m: map[string]string{}}
	return c
}

// resolve returns the absolute path p refers to once every symlink is followed. For a
// path that does not exist, the symlinks of its longest existing parent are resolved
// and the rest appended. A dangling symlink is an error.
func (c *confinedFS) resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	cur, rest := abs, ""
	for {
		real, err := c.evalSymlinks(cur)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if _, lerr := os.Lstat(cur); lerr == nil {
			return "", fmt.Errorf("%s is a symlink to nowhere", cur)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// evalSymlinks is filepath.EvalSymlinks of the clean absolute path abs, from the resolved
// paths of its parents when they are known: a build asks for the same directories once per
// file in them. Only a path that is not a symlink is resolved here, as its resolved parent
// joined with its name; a symlink goes to filepath.EvalSymlinks whole.
func (c *confinedFS) evalSymlinks(abs string) (string, error) {
	parent := filepath.Dir(abs)
	if c.real == nil || parent == abs {
		return filepath.EvalSymlinks(abs)
	}
	c.real.mu.Lock()
	real, ok := c.real.m[abs]
	c.real.mu.Unlock()
	if ok {
		return real, nil
	}
	realParent, err := c.evalSymlinks(parent)
	if err != nil {
		return "", err
	}
	joined := filepath.Join(realParent, filepath.Base(abs))
	fi, err := os.Lstat(joined)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return filepath.EvalSymlinks(abs)
	}
	c.real.mu.Lock()
	c.real.m[abs] = joined
	c.real.mu.Unlock()
	return joined, nil
}

// check returns the resolved path of p, or an error if it is outside root.
func (c *confinedFS) check(p string) (string, error) {
	real, err := c.resolve(p)
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", p, err)
	}
	if !within(c.root, real) {
		if abs, _ := filepath.Abs(p); abs != real {
			return "", fmt.Errorf("%w: %s (resolves to %s)", ErrOutsideRoot, p, real)
		}
		return "", fmt.Errorf("%w: %s", ErrOutsideRoot, p)
	}
	return real, nil
}

// within reports whether the absolute path p is root or below it.
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

func errReadOnly(op, p string) error {
	return fmt.Errorf("%s %s: the build file system is read-only", op, p)
}

// Create is refused: builds do not write.
func (c *confinedFS) Create(p string) (filesys.File, error) { return nil, errReadOnly("create", p) }

// Mkdir is refused: builds do not write.
func (c *confinedFS) Mkdir(p string) error { return errReadOnly("mkdir", p) }

// MkdirAll is refused: builds do not write.
func (c *confinedFS) MkdirAll(p string) error { return errReadOnly("mkdir", p) }

// RemoveAll is refused: builds do not write.
func (c *confinedFS) RemoveAll(p string) error { return errReadOnly("remove", p) }

// WriteFile is refused: builds do not write.
func (c *confinedFS) WriteFile(p string, _ []byte) error { return errReadOnly("write", p) }

// withContent returns a copy of c on which ReadFile of the file at the resolved path real
// returns data instead of what is on disk. Open of that file is refused.
func (c *confinedFS) withContent(real string, data []byte) *confinedFS {
	cp := *c
	cp.replaced = map[string][]byte{real: data}
	return &cp
}

// Open opens p for reading if it resolves inside root.
func (c *confinedFS) Open(p string) (filesys.File, error) {
	real, err := c.check(p)
	if err != nil {
		return nil, err
	}
	if _, ok := c.replaced[real]; ok {
		return nil, fmt.Errorf("open %s: replaced in memory; only ReadFile serves it", p)
	}
	if err := checkBuildFile(real); err != nil {
		return nil, err
	}
	return c.disk.Open(real)
}

// IsDir reports whether p is a directory inside root.
func (c *confinedFS) IsDir(p string) bool {
	real, err := c.check(p)
	if err != nil {
		return false
	}
	return c.disk.IsDir(real)
}

// ReadDir lists p if it resolves inside root.
func (c *confinedFS) ReadDir(p string) ([]string, error) {
	real, err := c.check(p)
	if err != nil {
		return nil, err
	}
	return c.disk.ReadDir(real)
}

// CleanedAbs resolves p like the disk file system does and refuses a result outside
// root.
func (c *confinedFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	if _, err := c.check(p); err != nil {
		return "", "", err
	}
	d, f, err := c.disk.CleanedAbs(p)
	if err != nil {
		return "", "", err
	}
	if _, err := c.check(filepath.Join(string(d), f)); err != nil {
		return "", "", err
	}
	return d, f, nil
}

// Exists reports whether p exists inside root.
func (c *confinedFS) Exists(p string) bool {
	real, err := c.check(p)
	if err != nil {
		return false
	}
	return c.disk.Exists(real)
}

// Glob returns the matches of pattern that resolve inside root.
func (c *confinedFS) Glob(pattern string) ([]string, error) {
	matches, err := c.disk.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		if _, err := c.check(m); err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// ReadFile reads p if it resolves inside root and passes checkBuildFile (size, alias expansion).
func (c *confinedFS) ReadFile(p string) ([]byte, error) {
	real, err := c.check(p)
	if err != nil {
		return nil, err
	}
	if data, ok := c.replaced[real]; ok {
		return bytes.Clone(data), nil
	}
	if err := checkBuildFile(real); err != nil {
		return nil, err
	}
	return c.disk.ReadFile(real)
}

// Walk walks p, stopping with an error at the first path that resolves outside root.
func (c *confinedFS) Walk(p string, walkFn filepath.WalkFunc) error {
	if _, err := c.check(p); err != nil {
		return err
	}
	return c.disk.Walk(p, func(path string, info fs.FileInfo, err error) error {
		if _, cerr := c.check(path); cerr != nil {
			return cerr
		}
		return walkFn(path, info, err)
	})
}

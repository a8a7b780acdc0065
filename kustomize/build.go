package kustomize

import (
	"fmt"
	"path/filepath"
	"sync"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/openapi"
)

// buildMu serialises builds. It is the package's only mutable state, and it exists
// because kustomize keeps its OpenAPI schema in a package-level variable that every
// build reads and that a kustomization's openapi: field replaces: concurrent builds
// race on it ("concurrent map read and map write", kubernetes-sigs/kustomize#3659), and
// one overlay's schema would leak into the next build. Builds hold the mutex and reset
// the schema when they finish.
var buildMu sync.Mutex

// Build renders the overlay in-process, like `kustomize build`, and returns the
// resources. overlay is a directory relative to root, or an absolute path inside it.
//
// Safety: plugins, exec and container KRM functions and Helm are disabled; remote
// resources (git or http URLs in resources, components, patches and every other field
// that names a file) are refused before kustomize runs, so a build never touches the
// network (ErrRemoteResource); every file is read through a file system confined to
// root, so neither "..", an absolute path nor a symlink can reach outside it
// (ErrOutsideRoot). Files inside one kustomization must also stay below its directory,
// as with `kustomize build`'s default load restrictor. A panic inside kustomize is
// returned as an error.
//
// Build does not write anything. Builds are serialised (see buildMu), so concurrent
// callers wait for each other. Errors read "building overlay <overlay>: ...".
func Build(root, overlay string) (resmap.ResMap, error) {
	var b *Builder
	return b.Build(root, overlay)
}

// wrapBuild words a build's error.
func wrapBuild(overlay string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("building overlay %s: %w", filepath.ToSlash(overlay), err)
}

// BuildYAML is Build rendered as a multi-document YAML stream, as `kustomize build`
// prints it.
func BuildYAML(root, overlay string) ([]byte, error) {
	rm, err := Build(root, overlay)
	if err != nil {
		return nil, err
	}
	out, err := rm.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("building overlay %s: rendering YAML: %w", filepath.ToSlash(overlay), err)
	}
	return out, nil
}

func (b *Builder) build(root, overlay string) (resmap.ResMap, error) {
	fsys, dir, plan, err := prepare(root, overlay)
	if err != nil {
		return nil, err
	}
	run := krustyRun(dir)
	if rm, err := b.fastImages(fsys, dir, plan, run); err == nil {
		return rm, nil
	}
	// Not applicable, or it failed: kustomize as it is decides, and words any error.
	return run(fsys, nil)
}

// runFunc runs kustomize on an overlay over a file system, then after (if not nil) on the
// result (see krustyRun).
type runFunc func(fsys filesys.FileSystem, after func(resmap.ResMap) error) (resmap.ResMap, error)

// prepare resolves the overlay's directory in a file system confined to root and checks
// its references (see Build).
func prepare(root, overlay string) (fsys *confinedFS, dir string, plan *buildPlan, err error) {
	if fsys, err = newConfinedFS(root); err != nil {
		return nil, "", nil, err
	}
	fsys.forOneBuild()
	dir = overlay
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(fsys.root, overlay)
	}
	if dir, err = fsys.check(dir); err != nil {
		return nil, "", nil, err
	}
	if plan, err = checkReferences(fsys, dir); err != nil {
		return nil, "", nil, err
	}
	return fsys, dir, plan, nil
}

// krustyRun returns a function that runs kustomize on the overlay in dir over a file
// system, then after (if not nil) on the result, holding buildMu throughout.
func krustyRun(dir string) runFunc {
	return func(fsys filesys.FileSystem, after func(resmap.ResMap) error) (resmap.ResMap, error) {
		return guarded(func() (resmap.ResMap, error) {
			opts := krusty.MakeDefaultOptions()
			opts.PluginConfig = types.DisabledPluginConfig()
			rm, err := krusty.MakeKustomizer(opts).Run(fsys, dir)
			if err == nil && after != nil {
				err = after(rm)
			}
			return rm, err
		})
	}
}

// guarded runs a kustomize call holding buildMu, turns a panic into an error and resets
// kustomize's global OpenAPI schema afterwards.
func guarded[T any](f func() (T, error)) (out T, err error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			var zero T
			out, err = zero, fmt.Errorf("kustomize panicked: %v", r)
		}
	}()
	defer openapi.ResetOpenAPI()
	return f()
}

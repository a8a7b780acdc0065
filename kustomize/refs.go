package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"sigs.k8s.io/kustomize/api/konfig"
	"sigs.k8s.io/kustomize/api/types"
)

// checkReferences walks the kustomization files reachable from the overlay in dir
// (through resources, bases, components, generators, transformers and validators that
// are directories) and refuses, naming the file and the entry:
//   - remote references (git or http URLs), which kustomize would clone or download;
//   - paths that are absolute or lead outside the repository root, also through
//     symlinks;
//   - Helm charts, which deliver does not render.
//
// Entries that do not exist are left for kustomize to report.
func checkReferences(fsys *confinedFS, dir string) (*buildPlan, error) {
	w := &refWalker{fsys: fsys, seen: map[string]bool{}, plan: &buildPlan{}}
	if err := w.walk(dir, true); err != nil {
		return nil, err
	}
	return w.plan, nil
}

type refWalker struct {
	fsys *confinedFS
	seen map[string]bool // resolved directories already checked
	plan *buildPlan
}

// buildPlan is what checkReferences learnt about the build that decides how its images
// are set (see fastImages).
type buildPlan struct {
	// topPath and top are the overlay's own kustomization file and its content; topK is
	// it parsed, with kustomize's fixes applied (imageTags merged into images).
	topPath string
	top     []byte
	topK    types.Kustomization
	// custom is set when some kustomization in the build has vars, configurations or
	// crds: these change which fields hold images or read them after the image
	// transformer ran.
	custom bool
	// readsTop is set when an entry of some kustomization (a generator's file, a patch, a
	// resource) is the overlay's kustomization file itself.
	readsTop bool
	// topReal is topPath with its symlinks resolved.
	topReal string
}

func (w *refWalker) walk(dir string, top bool) error {
	if w.seen[dir] {
		return nil
	}
	w.seen[dir] = true
	kfile := ""
	for _, n := range konfig.RecognizedKustomizationFileNames() {
		if fi, err := os.Stat(filepath.Join(dir, n)); err == nil && !fi.IsDir() {
			kfile = filepath.Join(dir, n)
			break
		}
	}
	if kfile == "" {
		if top {
			return &FileError{Path: w.rel(dir), Err: fmt.Errorf("%w (looked for %s)", ErrNoKustomization,
				strings.Join(konfig.RecognizedKustomizationFileNames(), ", "))}
		}
		return nil // a directory kustomize will reject with its own message
	}
	if _, err := w.fsys.check(kfile); err != nil {
		return err
	}
	data, err := os.ReadFile(kfile)
	if err != nil {
		return &FileError{Path: w.rel(kfile), Err: fmt.Errorf("reading: %w", err)}
	}
	if err := checkDuplicateKeys(data); err != nil {
		var fe *FileError
		if errors.As(err, &fe) {
			fe.Path = w.rel(kfile)
		}
		return err
	}
	var k types.Kustomization
	if err := k.Unmarshal(data); err != nil {
		return &FileError{Path: w.rel(kfile), Err: err}
	}
	k.FixKustomization()
	f := &kustFile{w: w, path: kfile, dir: dir, data: data}
	if top {
		w.plan.topPath, w.plan.top, w.plan.topK = kfile, data, k
		if w.plan.topReal, err = w.fsys.check(kfile); err != nil {
			return err
		}
	}
	//lint:ignore SA1019 deprecated fields of users' kustomizations are still read and built
	if len(k.Vars) > 0 || len(k.Configurations) > 0 || len(k.Crds) > 0 {
		w.plan.custom = true
	}

	if len(k.HelmCharts) > 0 || len(k.HelmChartInflationGenerator) > 0 || k.HelmGlobals != nil {
		return f.errorf("", "helm charts are not supported: deliver does not run helm")
	}
	// Directories that may hold further kustomizations.
	for _, list := range []struct {
		field   string
		entries []string
	}{
		{"resources", k.Resources}, {"components", k.Components},
		{"generators", k.Generators}, {"transformers", k.Transformers}, {"validators", k.Validators},
	} {
		for _, e := range list.entries {
			if strings.Contains(e, "\n") {
				continue // an inline plugin configuration, not a path
			}
			real, err := f.checkPath(list.field, e)
			if err != nil {
				return err
			}
			if fi, err := os.Stat(real); err == nil && fi.IsDir() {
				if err := w.walk(real, false); err != nil {
					return err
				}
			}
		}
	}
	// Plain files.
	var files []fieldEntry
	add := func(field string, entries ...string) {
		for _, e := range entries {
			if e != "" && !strings.Contains(e, "\n") {
				files = append(files, fieldEntry{field, e})
			}
		}
	}
	add("crds", k.Crds...)
	add("configurations", k.Configurations...)
	//lint:ignore SA1019 deprecated, but kustomize still reads it: so must the confinement check
	for _, p := range k.PatchesStrategicMerge {
		add("patchesStrategicMerge", string(p))
	}
	for _, p := range k.Patches {
		add("patches", p.Path)
	}
	//lint:ignore SA1019 deprecated, but kustomize still reads it: so must the confinement check
	for _, p := range k.PatchesJson6902 {
		add("patchesJson6902", p.Path)
	}
	for _, r := range k.Replacements {
		add("replacements", r.Path)
	}
	add("openapi", k.OpenAPI["path"])
	for _, g := range k.ConfigMapGenerator {
		add("configMapGenerator", generatorFiles(g.GeneratorArgs)...)
	}
	for _, g := range k.SecretGenerator {
		add("secretGenerator", generatorFiles(g.GeneratorArgs)...)
	}
	for _, fe := range files {
		if _, err := f.checkPath(fe.field, fe.entry); err != nil {
			return err
		}
	}
	return nil
}

type fieldEntry struct{ field, entry string }

// generatorFiles lists the files a config map or secret generator reads.
func generatorFiles(g types.GeneratorArgs) []string {
	var out []string
	for _, s := range g.FileSources {
		if _, p, ok := strings.Cut(s, "="); ok {
			s = p
		}
		out = append(out, s)
	}
	out = append(out, g.EnvSources...)
	if g.EnvSource != "" {
		out = append(out, g.EnvSource)
	}
	return out
}

// kustFile is one kustomization file being checked.
type kustFile struct {
	w    *refWalker
	path string
	dir  string
	data []byte
}

// checkPath refuses a remote entry or one that resolves outside the root, and returns
// the resolved path.
func (f *kustFile) checkPath(field, entry string) (string, error) {
	if isRemote(entry) {
		return "", f.errorf(entry, "%w: %s entry %q (deliver builds only what is in the config repository)", ErrRemoteResource, field, entry)
	}
	p := entry
	if !filepath.IsAbs(p) {
		p = filepath.Join(f.dir, p)
	}
	real, err := f.w.fsys.check(p)
	if err != nil {
		return "", f.errorf(entry, "%s entry %q: %w", field, entry, err)
	}
	if real == f.w.plan.topReal {
		f.w.plan.readsTop = true
	}
	return real, nil
}

// errorf builds a *FileError for this file, on the first line that mentions entry.
func (f *kustFile) errorf(entry, format string, args ...any) error {
	line := 0
	if entry != "" {
		if i := bytes.Index(f.data, []byte(entry)); i >= 0 {
			line = bytes.Count(f.data[:i], []byte("\n")) + 1
		}
	}
	return &FileError{Path: f.w.rel(f.path), Line: line, Err: fmt.Errorf(format, args...)}
}

// rel shows a path relative to the repository root where possible.
func (w *refWalker) rel(p string) string {
	if r, err := filepath.Rel(w.fsys.root, p); err == nil && !strings.HasPrefix(r, "..") {
		return filepath.ToSlash(r)
	}
	return p
}

var scpUserRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]*@`)

// isRemote reports whether a kustomization entry refers to something kustomize would
// fetch: any URL (http, https, ssh, file, git), scp-style user@host:path, a github.com
// shorthand, or a git query such as ?ref=. It errs on the side of refusing: gitlab.com
// and bitbucket.org shorthands are refused too, though kustomize would read them as
// local paths.
func isRemote(entry string) bool {
	l := strings.ToLower(strings.TrimSpace(entry))
	l = strings.TrimPrefix(l, "git::")
	switch {
	case strings.Contains(l, "://"), scpUserRE.MatchString(l):
		return true
	case strings.HasPrefix(l, "github.com/"), strings.HasPrefix(l, "github.com:"),
		strings.HasPrefix(l, "gitlab.com/"), strings.HasPrefix(l, "bitbucket.org/"):
		return true
	case strings.Contains(l, "?ref="), strings.Contains(l, "?version="), strings.Contains(l, "?timeout="), strings.Contains(l, "?submodules="):
		return true
	}
	return false
}

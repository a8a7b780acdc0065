package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/filters/imagetag"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	sigsyaml "sigs.k8s.io/yaml"
)

// Why this file exists: kustomize's image transformer runs once per images: entry and,
// for each entry, visits every image field of every resource, compiling two regular
// expressions per field (image.IsImageMatched). An overlay that pins every service's
// image therefore costs images × resources regexp compilations: 55 ms for 20 services,
// 19 s for 500 (BENCHMARKS.md, F1), and deliver renders after every edit.
//
// fastImages builds the overlay without its images: and then runs kustomize's own image
// filters (imagetag.LegacyFilter and imagetag.Filter, the two the transformer runs),
// entry after entry in the file's order: the first on every resource (which also meets
// every error the filters raise on a resource of the wrong shape), the others on only the
// resources that hold an image value the entry can match. A resource without such a value
// is one those filters leave unchanged, so the result is the same; the saving is in not
// visiting it.
//
// It applies only where the image transformer is the last thing that touches images:
// not when the overlay has replacements, transformers, validators or buildMetadata (they
// run after it or record it), nor when any kustomization in the build has vars,
// configurations or crds (they read image fields later, or add image fields beyond
// kustomize's defaults), nor when the build reads the overlay's kustomization file as
// data (a generator or resource naming it would see it without images:). Then, and
// whenever anything on the fast path fails, the build is plain kustomize.
// TestFastImagesMatchesKustomize pins the equivalence.

// imageFieldSpecs are kustomize's default image fields (internal/konfig/builtinpluginconsts,
// images.go, of sigs.k8s.io/kustomize/api v0.21.2), the FsSlice its image transformer is
// configured with when no configurations or crds add to it. TestImageFieldSpecsAreKustomizes
// compares them with the module's.
const imageFieldSpecsYAML = `
images:
- path: spec/containers[]/image
  create: true
- path: spec/initContainers[]/image
  create: true
- path: spec/volumes[]/image/reference
  create: true
- path: spec/template/spec/containers[]/image
  create: true
- path: spec/template/spec/initContainers[]/image
  create: true
- path: spec/template/spec/volumes[]/image/reference
  create: true
- path: spec/jobTemplate/spec/template/spec/volumes[]/image/reference
  create: true
`

// imageKeys are the last path elements of every field the image filters visit: the
// legacy filter's containers[].image and initContainers[].image at any depth, and the
// paths above.
var imageKeys = map[string]bool{"image": true, "reference": true}

func parseImageFieldSpecs() (types.FsSlice, error) {
	var c struct {
		Images types.FsSlice `json:"images"`
	}
	if err := sigsyaml.Unmarshal([]byte(imageFieldSpecsYAML), &c); err != nil {
		return nil, err
	}
	return c.Images, nil
}

// errNotFast says the fast path does not apply to a build; the caller builds plainly.
var errNotFast = errors.New("the fast image path does not apply")

// fastImages builds the overlay in dir as described above, or returns errNotFast (or any
// other error) for the caller to fall back to a plain build. A Builder's build without
// images: is reused when it still holds (see Builder).
func (b *Builder) fastImages(fsys *confinedFS, dir string, plan *buildPlan, run runFunc) (resmap.ResMap, error) {
	k := plan.topK
	if len(k.Images) == 0 || plan.custom || plan.readsTop || len(k.Replacements) > 0 || len(k.Transformers) > 0 ||
		len(k.Validators) > 0 || len(k.BuildMetadata) > 0 || plan.topPath == "" {
		return nil, errNotFast
	}
	real, err := fsys.check(plan.topPath)
	if err != nil {
		return nil, err
	}
	if err := checkBuildFile(real); err != nil {
		return nil, err
	}
	stripped, err := withoutImages(plan.top, k)
	if err != nil {
		return nil, err
	}
	specs, err := parseImageFieldSpecs()
	if err != nil {
		return nil, err
	}
	view := fsys.withContent(real, stripped)
	if rm, m := b.recall(dir, view); rm != nil {
		return guarded(func() (resmap.ResMap, error) {
			err := setImages(rm.Resources(), k.Images, specs, b.shapesChecked(m))
			if err == nil {
				b.markShapesChecked(m)
			}
			return rm, err
		})
	}
	rec := &recordingFS{confinedFS: view}
	return run(rec, func(rm resmap.ResMap) error {
		m := b.remember(dir, rec, rm)
		err := setImages(rm.Resources(), k.Images, specs, false)
		if err == nil {
			b.markShapesChecked(m)
		}
		return err
	})
}

// withoutImages returns the kustomization data without its images: and imageTags: keys,
// and checks that kustomize reads the result as k without images.
func withoutImages(data []byte, k types.Kustomization) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errNotFast
	}
	root := doc.Content[0]
	var kept []*yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		switch root.Content[i].Value {
		case "images", "imageTags":
			continue
		}
		kept = append(kept, root.Content[i], root.Content[i+1])
	}
	root.Content = kept
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	var back types.Kustomization
	if err := back.Unmarshal(buf.Bytes()); err != nil {
		return nil, err
	}
	back.FixKustomization()
	want := k
	want.Images = nil
	if !reflect.DeepEqual(back, want) {
		return nil, fmt.Errorf("%w: removing images changed how the kustomization reads", errNotFast)
	}
	return buf.Bytes(), nil
}

// setImages applies the entries to the resources as kustomize's image transformer does:
// for each entry in order, its legacy filter and then its field-spec filter on every
// resource, skipping the resources that hold no image value the entry could match.
//
// The first entry visits every resource: the filters fail on a resource of the wrong shape
// (metadata that does not read, a scalar where a field path expects a list or a mapping, a
// container that is not a mapping, an image that is not a string) whatever the entry's
// name, and a resource that cannot match must fail the build as it does with kustomize.
// Later entries would meet the same shapes, so they may skip what cannot match. So may the
// first when shapesChecked: the resources are a copy of ones on which the filters of some
// entry already ran everywhere without failing (a remembered build, see Builder). Both rest
// on kustomize's filters (api v0.21) checking a value's shape before they match its name;
// TestFastImagesMatchesKustomize's shape cases fail if an upgrade changes that.
func setImages(res []*resource.Resource, entries []types.Image, specs types.FsSlice, shapesChecked bool) error {
	values := make([][]string, len(res))
	for i, r := range res {
		values[i] = imageValues(r.YNode(), nil)
	}
	for e, img := range entries {
		for i, r := range res {
			if (e > 0 || shapesChecked) && !anyMayMatch(values[i], img.Name) {
				continue
			}
			if err := r.ApplyFilter(imagetag.LegacyFilter{ImageTag: img}); err != nil {
				return err
			}
			if err := r.ApplyFilter(imagetag.Filter{ImageTag: img, FsSlice: specs}); err != nil {
				return err
			}
			if r.YNode() == nil {
				return errNotFast
			}
			values[i] = imageValues(r.YNode(), nil)
		}
	}
	return nil
}

// imageValues appends the scalar values of every field named in imageKeys below n: a
// superset of the values the image filters look at.
func imageValues(n *kyaml.Node, out []string) []string {
	if n == nil {
		return out
	}
	switch n.Kind {
	case kyaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch {
			case v.Kind == kyaml.ScalarNode:
				if imageKeys[k.Value] {
					out = append(out, v.Value)
				}
				continue
			case imageKeys[k.Value]:
				// Not a scalar: the filters may refuse it (an image that is not a string);
				// let them see it.
				out = append(out, unknownValue)
			}
			out = imageValues(v, out)
		}
	case kyaml.SequenceNode, kyaml.DocumentNode:
		for _, c := range n.Content {
			out = imageValues(c, out)
		}
	case kyaml.AliasNode:
		return append(out, unknownValue)
	}
	return out
}

// unknownValue stands for a value imageValues cannot tell: mayMatch says yes to it.
const unknownValue = "\x80"

func anyMayMatch(values []string, name string) bool {
	for _, v := range values {
		if mayMatch(v, name) {
			return true
		}
	}
	return false
}

// mayMatch is a necessary condition for kustomize's image.IsImageMatched(value, name),
// which matches value against the regular expression
// "^" + name + "(:tag)?(@digest)?$": it answers false only when that cannot match. For a
// name made of letters, digits and "/_:-." (where "." matches any character but a line
// break), value must begin with len(name) characters that match it one by one; any
// other name, and a value with a non-ASCII character there, may match.
func mayMatch(value, name string) bool {
	if value == unknownValue {
		return true
	}
	for i := 0; i < len(name); i++ {
		if !literalNameByte(name[i]) {
			return true
		}
	}
	if len(value) < len(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := value[i]
		switch {
		case c >= 0x80:
			return true
		case name[i] == '.':
			if c == '\n' {
				return false
			}
		case c != name[i]:
			return false
		}
	}
	return true
}

func literalNameByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '/', '_', ':', '-', '.', '@', '=', ',', '%', '~', '!', '"', '\'', '#', '&', '<', '>', ';', '`', ' ':
		return true
	}
	return false
}

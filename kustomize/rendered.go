package kustomize

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

// ErrImageNotRendered marks an images: entry that the overlay's objects do not render as
// the entry says: no object uses the image's name, or what uses it ends up with another
// reference.
var ErrImageNotRendered = errors.New("an image the edit sets does not render")

// imageUse is one image reference in a built object.
type imageUse struct {
	object string // Kind/namespace/name
	field  string // like spec.template.spec.containers[0].image
	ref    string
}

// CheckRendered checks that each entry of the overlay's images: named in names renders
// exactly as FormatImage(entry) somewhere in rm, the overlay's build (Build(root,
// overlay)): as the value of a field named image (a container's, or any other object's)
// or of an image volume's image.reference. (An entry that sets neither tag nor digest
// keeps the tag the objects have: it must render with its new name.) It is how an edit proves that the reference it
// reports, and that was verified, is what the objects will run. Names without an entry
// are not checked.
//
// The error wraps ErrImageNotRendered and says, for each entry that fails, why: when no
// object uses the name, it lists the image names the objects do use (the names an
// images: entry can match, read from a build of the overlay without its own images:) and
// the closest one; otherwise it gives the reference rendered instead, and where. Which
// fields count is said at imageUses. When the reference is nowhere, or another entry
// renders the same one (so a name nothing uses could hide behind it), CheckRendered
// builds the overlay again without its images: to see which fields each name stood in,
// and requires one of those to render the entry.
func CheckRendered(root, overlay string, rm resmap.ResMap, names []string) error {
	dir := overlay
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, overlay)
	}
	_, entries, err := ReadImages(dir)
	if err != nil {
		return err
	}
	uses := imageUses(rm)
	var suspect []types.Image
	for _, e := range entries {
		if !slices.Contains(names, e.Name) {
			continue
		}
		// Another entry rendering the same reference would hide a name nothing uses.
		shared := slices.ContainsFunc(entries, func(o types.Image) bool { return o.Name != e.Name && FormatImage(o) == FormatImage(e) })
		if shared || !slices.ContainsFunc(uses, func(u imageUse) bool { return rendersAs(e, u.ref) }) {
			suspect = append(suspect, e)
		}
	}
	if len(suspect) == 0 {
		return nil
	}
	// Only now: which objects and fields did each entry's name stand in, before the
	// overlay's images: applied? That takes a build without them.
	bare, berr := buildWithoutImages(root, overlay)
	var before []imageUse
	if berr == nil {
		before = imageUses(bare)
	}
	var msgs []string
	for _, e := range suspect {
		if msg := notRendered(filepath.ToSlash(overlay), e, uses, before, berr); msg != "" {
			msgs = append(msgs, msg)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrImageNotRendered, strings.Join(msgs, "; "))
}

// rendersAs reports whether ref is what entry e makes of an image: FormatImage(e) when e
// sets a tag or digest; otherwise (a new name only, whatever tag the base has) a
// reference with e's name.
func rendersAs(e types.Image, ref string) bool {
	if e.NewTag != "" || e.Digest != "" {
		return ref == FormatImage(e)
	}
	want := e.NewName
	if want == "" {
		want = e.Name
	}
	return imageName(ref) == want
}

// notRendered explains why entry e does not render, given the image uses of the build
// (uses) and of the build without the overlay's images: (before, unless berr), or returns
// "" when it does after all: some field that held e's name renders what e says.
func notRendered(overlay string, e types.Image, uses, before []imageUse, berr error) string {
	want := FormatImage(e)
	if berr != nil {
		if slices.ContainsFunc(uses, func(u imageUse) bool { return rendersAs(e, u.ref) }) {
			return "" // cannot tell which entry rendered it: let it be
		}
		return fmt.Sprintf("image %q: no object of overlay %s runs %s (the images its objects run: %s)",
			e.Name, overlay, want, listOr(distinctNames(uses), "none"))
	}
	var got []string
	for _, b := range before {
		if imageName(b.ref) != e.Name {
			continue
		}
		for _, u := range uses {
			if u.object != b.object || u.field != b.field {
				continue
			}
			if rendersAs(e, u.ref) {
				return ""
			}
			got = append(got, fmt.Sprintf("%s at %s %s", u.ref, u.object, u.field))
		}
	}
	if len(got) == 0 {
		names := distinctNames(before)
		msg := fmt.Sprintf("no object of overlay %s uses image %q; the images its objects use are: %s", overlay, e.Name, listOr(names, "none"))
		if c := closest(e.Name, names); c != "" {
			msg += fmt.Sprintf(" (closest: %q)", c)
		}
		return msg
	}
	if len(got) > 3 {
		got = append(got[:3], fmt.Sprintf("and %d more", len(got)-3))
	}
	return fmt.Sprintf("image %q: the overlay sets %s, but its objects render %s", e.Name, want, strings.Join(got, ", "))
}

// buildWithoutImages builds the overlay with its own images: (and imageTags:) left out:
// the image references its images transformer sees.
func buildWithoutImages(root, overlay string) (resmap.ResMap, error) {
	fsys, dir, plan, err := prepare(root, overlay)
	if err != nil {
		return nil, err
	}
	if plan.topPath == "" {
		return nil, errNotFast
	}
	real, err := fsys.check(plan.topPath)
	if err != nil {
		return nil, err
	}
	stripped, err := withoutImages(plan.top, plan.topK)
	if err != nil {
		return nil, err
	}
	return krustyRun(dir)(fsys.withContent(real, stripped), nil)
}

// imageUses lists the image references in the objects: scalar fields named image (those
// the image transformer visits, containers and init containers at any depth, and those
// an overlay's configurations may add, like a custom resource's spec.image), and
// image.reference (an image volume). CustomResourceDefinitions are left out, as the
// transformer leaves them, and so are ConfigMaps and Secrets, whose data is not a spec.
func imageUses(rm resmap.ResMap) []imageUse {
	var out []imageUse
	for _, r := range rm.Resources() {
		switch r.GetKind() {
		case "CustomResourceDefinition", "ConfigMap", "Secret":
			continue
		}
		obj := r.GetKind() + "/" + r.GetName()
		if ns := r.GetNamespace(); ns != "" {
			obj = r.GetKind() + "/" + ns + "/" + r.GetName()
		}
		out = walkImages(r.YNode(), obj, "", out)
	}
	return out
}

func walkImages(n *kyaml.Node, obj, path string, out []imageUse) []imageUse {
	if n == nil {
		return out
	}
	switch n.Kind {
	case kyaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			p := k
			if path != "" {
				p = path + "." + k
			}
			if k == "image" {
				switch v.Kind {
				case kyaml.ScalarNode:
					out = append(out, imageUse{object: obj, field: p, ref: v.Value})
					continue
				case kyaml.MappingNode:
					for j := 0; j+1 < len(v.Content); j += 2 {
						if rk, rv := v.Content[j], v.Content[j+1]; rk.Value == "reference" && rv.Kind == kyaml.ScalarNode {
							out = append(out, imageUse{object: obj, field: p + ".reference", ref: rv.Value})
						}
					}
				}
			}
			out = walkImages(v, obj, p, out)
		}
	case kyaml.SequenceNode:
		for i, c := range n.Content {
			out = walkImages(c, obj, path+"["+strconv.Itoa(i)+"]", out)
		}
	case kyaml.DocumentNode:
		for _, c := range n.Content {
			out = walkImages(c, obj, path, out)
		}
	}
	return out
}

// imageName is a reference without its tag and digest: the name an images: entry
// matches it by.
func imageName(ref string) string {
	name, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	return name
}

// distinctNames returns the image names of the uses, sorted, without duplicates.
func distinctNames(uses []imageUse) []string {
	var names []string
	for _, u := range uses {
		if n := imageName(u.ref); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

func listOr(names []string, none string) string {
	if len(names) == 0 {
		return none
	}
	const max = 20
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
	}
	return strings.Join(names, ", ")
}

// closest returns the candidate nearest to name by edit distance, comparing whole names
// and their last path components (so "registry.example.com/team/web" finds "web"), or ""
// when there is none. Ties go to the first candidate.
func closest(name string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := min(editDistance(name, c), editDistance(lastComponent(name), lastComponent(c)))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func lastComponent(name string) string {
	return name[strings.LastIndexByte(name, '/')+1:]
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

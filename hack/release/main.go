// Command release does the two parts of a deliver release that are more than plumbing, for
// hack/release.sh (make release, run by .github/workflows/release.yml on a v* tag):
//
//	go run ./hack/release tags VERSION [EXISTING_TAG...]
//
// prints the tags the release sets, one a line: VERSION itself, then vX.Y and vX when VERSION is
// the newest release of that minor and major version among EXISTING_TAG (so a patch of an older
// line never moves `@v1` backwards; a pre-release moves neither). The same tags name the image.
//
//	go run ./hack/release pin --version v1.2.3 --image ghcr.io/deliverhq/deliver --digest sha256:...
//
// rewrites, in the release commit, the lines that name deliver's image so that every way of
// using the release runs the image it published, by digest: action.yml's runs.image becomes
// docker://IMAGE@DIGEST (so `uses: deliverhq/deliver@v1` pulls it and never builds the
// Dockerfile), the GitLab template's DELIVER_VERSION and the CI/CD component's image input
// default become VERSION@DIGEST. Nothing else in those files changes, byte for byte.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/blang/semver/v4"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.yaml.in/yaml/v3"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintf(os.Stderr, "release: %v\n", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintf(os.Stderr, "release: %v\n", err)
		os.Exit(1)
	}
}

// errUsage marks a bad command line or version.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: release tags VERSION [EXISTING_TAG...] | release pin --version V --image REPO --digest D", errUsage)
	}
	switch args[0] {
	case "tags":
		if len(args) < 2 {
			return fmt.Errorf("%w: release tags VERSION [EXISTING_TAG...]", errUsage)
		}
		tags, err := releaseTags(args[1], args[2:])
		if err != nil {
			return err
		}
		for _, t := range tags {
			fmt.Fprintln(stdout, t)
		}
		return nil
	case "pin":
		fs := flag.NewFlagSet("pin", flag.ContinueOnError)
		fs.SetOutput(stderr)
		version := fs.String("version", "", "the release, vX.Y.Z")
		image := fs.String("image", "ghcr.io/deliverhq/deliver", "the image repository the release pushed")
		digest := fs.String("digest", "", "the digest of the image index the release pushed (sha256:...)")
		root := fs.String("root", ".", "the repository's root")
		if err := fs.Parse(args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
		}
		if _, err := parseVersion(*version); err != nil {
			return err
		}
		repo, err := name.NewRepository(*image, name.StrictValidation)
		if err != nil {
			return fmt.Errorf("%w: --image %q: %v", errUsage, *image, err)
		}
		if _, err := v1.NewHash(*digest); err != nil || !strings.HasPrefix(*digest, "sha256:") {
			return fmt.Errorf("%w: --digest %q is not a sha256 digest", errUsage, *digest)
		}
		return pin(*root, *version, repo.Name(), *digest)
	}
	return fmt.Errorf("%w: unknown command %q (tags, pin)", errUsage, args[0])
}

// parseVersion parses a release tag: v and a semantic version without build metadata (image
// tags cannot hold '+').
func parseVersion(tag string) (semver.Version, error) {
	if !strings.HasPrefix(tag, "v") {
		return semver.Version{}, fmt.Errorf("%w: version %q: a release tag is v<major>.<minor>.<patch>, e.g. v1.2.3", errUsage, tag)
	}
	v, err := semver.Parse(strings.TrimPrefix(tag, "v"))
	if err != nil {
		return semver.Version{}, fmt.Errorf("%w: version %q: %v", errUsage, tag, err)
	}
	if len(v.Build) > 0 {
		return semver.Version{}, fmt.Errorf("%w: version %q: build metadata (+...) cannot be an image tag", errUsage, tag)
	}
	return v, nil
}

// releaseTags returns the tags of the release tag: itself, and the floating vX.Y and vX when it
// is the newest release of its minor and its major version among existing (tags that are not
// releases are ignored). Pre-releases get no floating tags.
func releaseTags(tag string, existing []string) ([]string, error) {
	v, err := parseVersion(tag)
	if err != nil {
		return nil, err
	}
	tags := []string{tag}
	if len(v.Pre) > 0 {
		return tags, nil
	}
	newestMinor, newestMajor := true, true
	for _, e := range existing {
		o, err := parseVersion(e)
		if err != nil || len(o.Pre) > 0 || o.Major != v.Major || !o.GT(v) {
			continue
		}
		newestMajor = false
		if o.Minor == v.Minor {
			newestMinor = false
		}
	}
	if newestMinor {
		tags = append(tags, fmt.Sprintf("v%d.%d", v.Major, v.Minor))
	}
	if newestMajor {
		tags = append(tags, fmt.Sprintf("v%d", v.Major))
	}
	return tags, nil
}

// pinMarker ends every line pin writes.
const pinMarker = "pinned by the release (hack/release)"

// pin rewrites the image lines of action.yml, .gitlab-ci-template.yml and templates/deliver.yml
// under root for the release version of image@digest.
func pin(root, version, image, digest string) error {
	edits := []struct {
		file  string
		path  []string // mapping keys from the document's root to the scalar
		value string
		check func(docs []*yaml.Node) error
	}{
		{"action.yml", []string{"runs", "image"}, "docker://" + image + "@" + digest, nil},
		{".gitlab-ci-template.yml", []string{".deliver", "variables", "DELIVER_VERSION"}, `"` + version + "@" + digest + `"`,
			func(docs []*yaml.Node) error {
				// The job's image must be IMAGE:${DELIVER_VERSION} for the pin to name the release.
				n := lookup(docs, ".deliver", "image", "name")
				if want := image + ":${DELIVER_VERSION}"; n == nil || n.Value != want {
					return fmt.Errorf(".deliver.image.name must be %s", want)
				}
				return nil
			}},
		{filepath.Join("templates", "deliver.yml"), []string{"spec", "inputs", "image", "default"}, image + ":" + version + "@" + digest, nil},
	}
	// Compute every file first and write none unless all could be pinned.
	outs := map[string]string{}
	for _, e := range edits {
		p := filepath.Join(root, e.file)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		// The GitLab files have two YAML documents: the spec header and the jobs.
		docs, err := decodeAll(data)
		if err != nil {
			return fmt.Errorf("%s: %w", e.file, err)
		}
		if e.check != nil {
			if err := e.check(docs); err != nil {
				return fmt.Errorf("%s: %w", e.file, err)
			}
		}
		n := lookup(docs, e.path...)
		if n == nil || n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: no %s to pin", e.file, strings.Join(e.path, "."))
		}
		out, err := replaceLine(string(data), n.Line, n.Column, e.value+" # "+version+", "+pinMarker)
		if err != nil {
			return fmt.Errorf("%s: %w", e.file, err)
		}
		// Read the value back: the edit is what the next reader of the file gets.
		again, err := decodeAll([]byte(out))
		if err != nil {
			return fmt.Errorf("%s after pinning: %w", e.file, err)
		}
		if got := lookup(again, e.path...); got == nil || got.Value != strings.Trim(e.value, `"`) {
			return fmt.Errorf("%s: pinning %s did not read back", e.file, strings.Join(e.path, "."))
		}
		outs[p] = out
	}
	for p, out := range outs {
		if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// decodeAll decodes every YAML document of data.
func decodeAll(data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, &doc)
	}
}

// lookup follows mapping keys from the root of each document and returns the first node found.
func lookup(docs []*yaml.Node, path ...string) *yaml.Node {
	for _, n := range docs {
		if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
			n = n.Content[0]
		}
		for _, key := range path {
			if n == nil || n.Kind != yaml.MappingNode {
				n = nil
				break
			}
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == key {
					next = n.Content[i+1]
				}
			}
			n = next
		}
		if n != nil {
			return n
		}
	}
	return nil
}

// replaceLine replaces line (1-based) of text from column (1-based) to its end with s, keeping
// the line's ending (LF or CRLF).
func replaceLine(text string, line, column int, s string) (string, error) {
	lines := strings.SplitAfter(text, "\n")
	if line < 1 || line > len(lines) {
		return "", fmt.Errorf("line %d out of range", line)
	}
	l := lines[line-1]
	end := strings.TrimRight(l, "\r\n")
	if column < 1 || column > len(end) {
		return "", fmt.Errorf("line %d: column %d out of range", line, column)
	}
	lines[line-1] = end[:column-1] + s + l[len(end):]
	return strings.Join(lines, ""), nil
}

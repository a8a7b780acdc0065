package kustomize

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"sigs.k8s.io/kustomize/api/types"
)

// ErrInvalidImage marks an image argument or image change that is malformed: a bad name,
// tag or digest, a missing part, or a character that has no place in an image reference.
var ErrInvalidImage = errors.New("invalid image")

// Keep is the value of NewName, NewTag or Digest that keeps what the kustomization file
// already holds for that field (kustomize's "preserve" separator, as in
// `kustomize edit set image web=*:1.2`).
const Keep = "*"

const (
	maxArgLen  = 1024 // longer than any valid name=newname:tag@digest
	maxNameLen = 255  // the distribution spec's limit on a repository name
)

var (
	// tagRE is the OCI distribution spec's tag grammar.
	tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
	// tagSuffixRE is a tagSuffix: what follows a tag, so it may start with "." or "-".
	tagSuffixRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,127}$`)
	// pathComponentRE is one path component of a repository name (distribution reference grammar).
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	// domainRE is a registry host with an optional port.
	domainRE = regexp.MustCompile(`^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*(?::[0-9]{1,5})?$`)
)

// ParseImageArg parses one image argument in the syntax of `kustomize edit set image`:
//
//	name=newname:tag@digest   name=newname:tag   name=newname@digest   name=newname
//	name:tag@digest           name:tag           name@digest
//
// In the forms without "=", the reference before the tag is the image name and NewName is
// left empty. The tag is what follows the last ":" after the last "/", so a registry with a
// port parses as expected: `web=localhost:5000/team/web:1.2` has NewName
// "localhost:5000/team/web" and NewTag "1.2". Any of newname, tag and digest may be "*"
// (Keep) to keep the value the kustomization file already has.
//
// Fields left empty mean "remove" to SetImages: `web:1.2` applied to an entry that has a
// newName or digest drops them, as `kustomize edit set image` does. TagSuffix is always
// left empty, so every form drops an entry's tagSuffix, as kustomize's edit does too.
//
// Validation: names must be valid lower-case repository references (an optional
// registry host[:port], then path components), tags must match the OCI tag grammar
// [A-Za-z0-9_][A-Za-z0-9._-]{0,127}, and digests must be sha256 (64 hex digits) or sha512
// (128). Any other character, including spaces, quotes, shell metacharacters, newlines and
// NUL, is refused. Errors wrap ErrInvalidImage and name the argument and the bad part.
func ParseImageArg(s string) (types.Image, error) {
	bad := func(format string, args ...any) (types.Image, error) {
		return types.Image{}, fmt.Errorf("%w %s: %s", ErrInvalidImage, quoteArg(s), fmt.Sprintf(format, args...))
	}
	if s == "" {
		return bad("empty argument")
	}
	if len(s) > maxArgLen {
		return bad("longer than %d bytes", maxArgLen)
	}
	for i, r := range s {
		if !isArgRune(r) {
			return bad("character %q at offset %d is not allowed in an image reference", r, i)
		}
	}
	key, value, hasKey := strings.Cut(s, "=")
	if !hasKey {
		value = key
	} else {
		if key == "" {
			return bad("missing image name before \"=\"")
		}
		if value == "" {
			return bad("missing new image after \"=\"")
		}
		if strings.Contains(value, "=") {
			return bad("more than one \"=\"")
		}
	}
	ref, digest, hasDigest := strings.Cut(value, "@")
	if hasDigest {
		if digest == "" {
			return bad("empty digest after \"@\"")
		}
		if strings.Contains(digest, "@") {
			return bad("more than one \"@\"")
		}
	}
	repo, tag, hasTag := ref, "", false
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		repo, tag, hasTag = ref[:i], ref[i+1:], true
		if tag == "" {
			return bad("empty tag after \":\"")
		}
	}
	img := types.Image{NewTag: tag, Digest: digest}
	if hasKey {
		img.Name, img.NewName = key, repo
		if repo == "" {
			return bad("missing new name before the tag or digest")
		}
	} else {
		img.Name = repo
		if !hasTag && !hasDigest {
			return bad("no tag or digest: use name:tag, name@digest or name=newname")
		}
	}
	if err := checkName(img.Name); err != nil {
		return bad("image name %s", err)
	}
	if err := validateParts(img); err != nil {
		return bad("%s", err)
	}
	return img, nil
}

// ValidateImage checks an image change built in code rather than parsed with
// ParseImageArg: Name must be a valid repository name, and NewName, NewTag, Digest and
// TagSuffix must each be empty (remove), "*" (Keep) or valid; a tag suffix is made of
// the characters of a tag, [A-Za-z0-9._-], at most 127 of them. Errors wrap
// ErrInvalidImage.
func ValidateImage(img types.Image) error {
	if err := checkName(img.Name); err != nil {
		return fmt.Errorf("%w %s: name %s", ErrInvalidImage, quoteArg(img.Name), err)
	}
	if err := validateParts(img); err != nil {
		return fmt.Errorf("%w %s: %s", ErrInvalidImage, quoteArg(img.Name), err)
	}
	if img.TagSuffix != "" && img.TagSuffix != Keep && !tagSuffixRE.MatchString(img.TagSuffix) {
		return fmt.Errorf("%w %s: tag suffix %s must match [A-Za-z0-9._-]{1,127}", ErrInvalidImage, quoteArg(img.Name), quoteArg(img.TagSuffix))
	}
	return nil
}

// validateParts checks NewName, NewTag and Digest, each of which may be empty or Keep.
func validateParts(img types.Image) error {
	if img.NewName != "" && img.NewName != Keep {
		if err := checkName(img.NewName); err != nil {
			return fmt.Errorf("new name %s", err)
		}
	}
	if img.NewTag != "" && img.NewTag != Keep {
		if err := checkTag(img.NewTag); err != nil {
			return err
		}
	}
	if img.Digest != "" && img.Digest != Keep {
		if err := checkDigest(img.Digest); err != nil {
			return err
		}
	}
	return nil
}

// FormatImage renders the reference kustomize writes into a container's image field for
// this override when the base refers to the image by its bare name:
// newName (or name when newName is empty), then ":tag" and "@digest" when set. When both
// NewTag and Digest are empty, a TagSuffix is appended as the tag. Fields equal to "*"
// (Keep) are written as they are; resolve them first (ReadImages after SetImages).
func FormatImage(img types.Image) string {
	ref := img.NewName
	if ref == "" {
		ref = img.Name
	}
	switch {
	case img.NewTag != "" || img.Digest != "":
		if img.NewTag != "" {
			ref += ":" + img.NewTag
		}
		if img.Digest != "" {
			ref += "@" + img.Digest
		}
	case img.TagSuffix != "":
		ref += ":" + img.TagSuffix
	}
	return ref
}

// checkName validates a repository name: an optional registry host[:port] (the first
// component, when it contains "." or ":" or is "localhost"), then lower-case path
// components separated by "/".
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case s == Keep:
		return errors.New(`"*" is only allowed for the new name, tag or digest`)
	case len(s) > maxNameLen:
		return fmt.Errorf("%s is longer than %d characters", quoteArg(s), maxNameLen)
	}
	parts := strings.Split(s, "/")
	if len(parts) > 1 && (parts[0] == "localhost" || strings.ContainsAny(parts[0], ".:")) {
		if !domainRE.MatchString(parts[0]) {
			return fmt.Errorf("%q: registry host %q is not a valid host[:port]", s, parts[0])
		}
		parts = parts[1:]
	}
	for _, p := range parts {
		if !pathComponentRE.MatchString(p) {
			if strings.Contains(p, ":") {
				return fmt.Errorf("%q: must not include a tag (the part after %q)", s, ":")
			}
			return fmt.Errorf("%q: path component %q must be lower-case letters and digits separated by \".\", \"_\", \"__\" or \"-\"", s, p)
		}
	}
	// go-containerregistry's parser is what later resolves the reference; it must agree.
	if _, err := name.NewRepository(s); err != nil {
		return fmt.Errorf("%q: %v", s, err)
	}
	return nil
}

func checkTag(s string) error {
	if !tagRE.MatchString(s) {
		return fmt.Errorf("tag %s must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", quoteArg(s))
	}
	return nil
}

func checkDigest(s string) error {
	algo, hex, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("digest %s must be algorithm:hex, like sha256:<64 hex digits>", quoteArg(s))
	}
	n := digestHexLen(algo)
	if n == 0 {
		return fmt.Errorf("digest %s: algorithm %q is not supported (sha256 or sha512)", quoteArg(s), algo)
	}
	if len(hex) != n || strings.Trim(hex, "0123456789abcdef") != "" {
		return fmt.Errorf("digest %s: %s needs %d lower-case hex digits", quoteArg(s), algo, n)
	}
	return nil
}

// digestHexLen is the length of the hex encoding of a supported digest algorithm, or 0.
func digestHexLen(algo string) int {
	switch algo {
	case "sha256":
		return 64
	case "sha512":
		return 128
	}
	return 0
}

// isArgRune reports whether r can appear in an image argument at all.
func isArgRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		return true
	}
	return strings.ContainsRune("._-/:@=*", r)
}

// quoteArg quotes s for an error message, shortening very long input.
func quoteArg(s string) string {
	const max = 160
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

package policy

import (
	"strings"

	"github.com/blang/semver/v4"
)

// CompareVersions compares two image tags as semantic versions, with github.com/blang/semver/v4:
// a pre-release sorts before its release and its identifiers compare numerically where they are
// numbers (1.2.3-rc.10 after 1.2.3-rc.2), and build metadata does not order (1.2.3+build.5 and
// 1.2.3 are equal). A leading "v" is tolerated, and so are MAJOR.MINOR tags (1.2 is 1.2.0). ok
// is false when either tag is not a version: a commit hash, a branch name, "latest", a bare
// number (a build number, or a hash that happens to be all digits).
func CompareVersions(a, b string) (cmp int, ok bool) {
	va, oka := parseVersion(a)
	vb, okb := parseVersion(b)
	if !oka || !okb {
		return 0, false
	}
	return va.Compare(vb), true
}

// parseVersion parses a tag as a semantic version; see CompareVersions.
func parseVersion(tag string) (semver.Version, bool) {
	core, _, _ := strings.Cut(strings.TrimPrefix(tag, "v"), "-")
	core, _, _ = strings.Cut(core, "+")
	if !strings.Contains(core, ".") || strings.TrimSpace(tag) != tag {
		return semver.Version{}, false
	}
	v, err := semver.ParseTolerant(tag)
	if err != nil {
		return semver.Version{}, false
	}
	return v, true
}

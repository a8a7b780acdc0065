package step

import (
	"strconv"
	"strings"
)

// compareSemver compares two tags as semantic versions (an optional leading "v", then
// MAJOR.MINOR.PATCH with optional further numeric parts and a pre-release suffix). ok is false
// when either is not a version.
func compareSemver(a, b string) (cmp int, ok bool) {
	pa, prea, oka := parseSemver(a)
	pb, preb, okb := parseSemver(b)
	if !oka || !okb {
		return 0, false
	}
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x = pa[i]
		}
		if i < len(pb) {
			y = pb[i]
		}
		if x != y {
			if x < y {
				return -1, true
			}
			return 1, true
		}
	}
	switch {
	case prea == preb:
		return 0, true
	case prea == "":
		return 1, true // a release sorts after its pre-releases
	case preb == "":
		return -1, true
	case prea < preb:
		return -1, true
	}
	return 1, true
}

func parseSemver(s string) ([]int, string, bool) {
	s = strings.TrimPrefix(s, "v")
	core, pre, _ := strings.Cut(s, "-")
	core, _, _ = strings.Cut(core, "+")
	parts := strings.Split(core, ".")
	if len(parts) < 2 {
		return nil, "", false
	}
	nums := make([]int, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, "", false
		}
		nums = append(nums, n)
	}
	return nums, pre, true
}

package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// ErrTooLarge means a file the build reads is too big, or a YAML document in it would expand
// (through aliases) to too many nodes: an alias bomb ("billion laughs") or an accident, either
// of which would otherwise take the build's memory and time without bound.
var ErrTooLarge = errors.New("file too large to build")

// MaxBuildFileSize bounds the size of every file a build reads (8 MiB). A file over it is
// refused by its size, before it is read: the config repo's clone (step/configrepo) does not
// even fetch such a file, and leaves a placeholder of at least that size in its place.
const MaxBuildFileSize = maxBuildFile

const (
	// maxBuildFile bounds the size of every file the build reads.
	maxBuildFile = 8 << 20
	// maxExpandedNodes bounds the YAML nodes a file may expand to with its aliases resolved.
	maxExpandedNodes = 1_000_000
)

// checkBuildFile refuses a file the build should not read: larger than maxBuildFile, or YAML
// whose aliases expand past maxExpandedNodes. It reads the file once more than kustomize does;
// the check is linear in the file's size.
func checkBuildFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() {
		return nil // kustomize reports it
	}
	if fi.Size() > maxBuildFile {
		// Not the size itself: the clone may hold a placeholder for a file it did not fetch,
		// whose size says only that it is too large.
		return fmt.Errorf("%w: %s is larger than the %d bytes (%d MiB) a build reads", ErrTooLarge, path, maxBuildFile, maxBuildFile>>20)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	if !bytes.Contains(data, []byte("*")) {
		return nil // no aliases: nothing can expand
	}
	return eachDocument(data, func(doc *yaml.Node) error {
		if n := expandedNodes(doc, map[*yaml.Node]int{}, maxExpandedNodes); n > maxExpandedNodes {
			return fmt.Errorf("%w: %s: its YAML aliases expand to more than %d nodes", ErrTooLarge, path, maxExpandedNodes)
		}
		return nil
	})
}

// expandedNodes counts the nodes of n with every alias replaced by what it points to, stopping
// early once the count passes limit. memo caches subtree counts.
func expandedNodes(n *yaml.Node, memo map[*yaml.Node]int, limit int) int {
	if n == nil {
		return 0
	}
	if c, ok := memo[n]; ok {
		return c
	}
	memo[n] = limit + 1 // a cycle counts as unbounded
	count := 1
	if n.Kind == yaml.AliasNode {
		count += expandedNodes(n.Alias, memo, limit)
	}
	for _, c := range n.Content {
		if count > limit {
			break
		}
		count += expandedNodes(c, memo, limit)
	}
	memo[n] = count
	return count
}

package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkDuplicateKeys refuses YAML in which a mapping holds the same key twice. kustomize
// reads kustomization files through a JSON conversion that silently keeps the last of
// duplicated keys (kubernetes-sigs/kustomize#5061), so "namespace: a" followed later by
// "namespace: b" would deploy to b without a word; deliver refuses it instead. It returns
// a *FileError with the line of the second key. Aliases are not followed: the anchored
// node is checked where it is defined, so an alias bomb costs no more than its text.
//
// kustomize decodes the file's top level into its Kustomization type through encoding/json,
// which matches field names regardless of case, so "Namespace" there is the same key as
// "namespace": top-level keys are compared case-folded. Below the top level keys are compared
// as written, since many of those mappings (labels, annotations, literals) are
// case-sensitive maps.
func checkDuplicateKeys(data []byte) error {
	return eachDocument(data, func(doc *yaml.Node) error {
		for _, root := range doc.Content {
			if err := duplicateKeys(root, "", true); err != nil {
				return err
			}
		}
		return nil
	})
}

// eachDocument calls f with every YAML document in data, in order, until f returns an
// error. Text this parser cannot read ends the walk without an error: the checks that
// use it leave such text for the real parser (kustomize's) to report.
func eachDocument(data []byte, f func(doc *yaml.Node) error) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return nil
		}
		if err := f(&doc); err != nil {
			return err
		}
	}
}

func duplicateKeys(n *yaml.Node, path string, fold bool) error {
	switch n.Kind {
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := duplicateKeys(c, fmt.Sprintf("%s[%d]", path, i), false); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		type seen struct {
			name string
			line int
		}
		first := map[string]seen{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				continue
			}
			if k.Value == "<<" && k.ShortTag() == "!!merge" {
				continue // merge keys may repeat
			}
			name := k.Value
			id := name
			if fold {
				id = strings.ToLower(name)
			}
			if prev, ok := first[id]; ok {
				where := name
				if path != "" {
					where = path + "." + name
				}
				also := ""
				if prev.name != name {
					also = fmt.Sprintf(", as %s: kustomize reads these keys regardless of case", prev.name)
				}
				return &FileError{Line: k.Line, Err: fmt.Errorf("duplicate key %s (first at line %d%s): YAML keys must be unique, and kustomize would silently use only one", where, prev.line, also)}
			}
			first[id] = seen{name, k.Line}
			child := name
			if path != "" {
				child = path + "." + name
			}
			if err := duplicateKeys(v, child, false); err != nil {
				return err
			}
		}
	}
	return nil
}

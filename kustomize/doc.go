// Package kustomize holds the two kustomize operations deliver needs on a GitOps config
// repository: editing the `images:` override of an environment overlay, and rendering an
// overlay in-process to prove it still builds (and to get the objects to apply).
//
// Image edits (SetImages, EditImages) splice the original bytes of the kustomization file
// instead of re-serialising it, so comments, blank lines, key order, indentation, quoting
// and line endings survive and the commit diff shows only the changed values. Every edit
// is re-parsed and checked before anything is written.
//
// Builds (Build, BuildYAML) run sigs.k8s.io/kustomize/api/krusty with plugins, exec and
// container functions and Helm disabled, refuse remote (git or http) resources before
// kustomize sees them, and read files only through a file system confined to the
// repository root, so an overlay can neither reach the network nor read outside the
// checkout.
//
// The package has one piece of mutable package state: the mutex that serialises builds
// (see Build for why).
package kustomize

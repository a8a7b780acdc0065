package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// ApplySet labels and annotations (KEP-3659).
const (
	// LabelApplySetID is the parent's label holding the ApplySet ID.
	LabelApplySetID = "applyset.kubernetes.io/id"
	// LabelPartOf is the members' label holding the ApplySet ID.
	LabelPartOf = "applyset.kubernetes.io/part-of"
	// AnnotationTooling is the parent's annotation naming the tool that
	// manages the ApplySet, "name/version".
	AnnotationTooling = "applyset.kubernetes.io/tooling"
	// AnnotationContainsGroupKinds is the parent's annotation listing the
	// members' group-kinds, sorted and comma-separated ("Deployment.apps,Service").
	AnnotationContainsGroupKinds = "applyset.kubernetes.io/contains-group-kinds"
	// AnnotationAdditionalNamespaces is the parent's annotation listing the
	// namespaces of members outside the parent's namespace.
	AnnotationAdditionalNamespaces = "applyset.kubernetes.io/additional-namespaces"
)

// ID returns the ApplySet ID of the parent r (KEP-3659):
// "applyset-" + base64url-without-padding(sha256("<name>.<namespace>.<Kind>.<group>")) + "-v1".
// The parent's group is the core group, so the hashed string ends with a
// dot. Kind defaults to Secret; Namespace is used as given.
func (r ApplySetRef) ID() string {
	kind := r.Kind
	if kind == "" {
		kind = "Secret"
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s.%s.%s.%s", r.Name, r.Namespace, kind, "")))
	return "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
}

// ref returns the parent's object reference.
func (r ApplySetRef) ref() ObjectRef {
	return ObjectRef{Version: "v1", Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
}

// resource returns the parent's resource: Secrets or ConfigMaps.
func (r ApplySetRef) resource() schema.GroupVersionResource {
	if r.Kind == "ConfigMap" {
		return schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	}
	return schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
}

// applySet is an ApplySet's parent as found before the apply.
type applySet struct {
	ref ApplySetRef // Namespace and Kind defaulted
	id  string
	// prevGroupKinds and prevNamespaces are the parent's
	// contains-group-kinds and additional-namespaces; empty if it did not
	// exist.
	prevGroupKinds, prevNamespaces map[string]bool
}

// loadApplySet reads the ApplySet parent of opts, if it exists, and checks
// that it is ours: labelled with the expected ID and annotated with a
// tooling of the same name as opts.Tooling.
func (c *Client) loadApplySet(ctx context.Context, opts ApplyOptions) (*applySet, error) {
	ref := opts.ApplySet
	set := &applySet{ref: ref, id: ref.ID(), prevGroupKinds: map[string]bool{}, prevNamespaces: map[string]bool{}}
	what := "ApplySet parent " + ref.ref().String()
	u, err := c.dynamic.Resource(ref.resource()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return set, nil
	case err != nil:
		return nil, classify(ctx, "reading "+what, err)
	}
	switch id, ok := u.GetLabels()[LabelApplySetID]; {
	case !ok:
		return nil, fmt.Errorf("checking %s: %w: it exists but has no %s label; refusing to adopt an object that is not an ApplySet parent",
			what, ErrApply, LabelApplySetID)
	case id != set.id:
		return nil, fmt.Errorf("checking %s: %w: its %s label is %q, want %q", what, ErrApply, LabelApplySetID, id, set.id)
	}
	ann := u.GetAnnotations()
	tooling, ok := ann[AnnotationTooling]
	if !ok {
		return nil, fmt.Errorf("checking %s: %w: it has no %s annotation; refusing to change an ApplySet of unknown tooling",
			what, ErrApply, AnnotationTooling)
	}
	if toolName(tooling) != toolName(opts.Tooling) {
		return nil, fmt.Errorf("checking %s: %w: it is managed by %q (%s), not by %s; refusing to change another tool's ApplySet",
			what, ErrApply, tooling, AnnotationTooling, toolName(opts.Tooling))
	}
	set.prevGroupKinds = splitSet(ann[AnnotationContainsGroupKinds])
	set.prevNamespaces = splitSet(ann[AnnotationAdditionalNamespaces])
	return set, nil
}

// toolName returns the name part of a tooling value "name/version".
func toolName(tooling string) string {
	name, _, _ := strings.Cut(tooling, "/")
	return name
}

// splitSet parses a comma-separated annotation value.
func splitSet(v string) map[string]bool {
	s := map[string]bool{}
	for _, e := range strings.Split(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			s[e] = true
		}
	}
	return s
}

// joinSet formats a set as a sorted comma-separated annotation value.
func joinSet(s map[string]bool) string {
	return strings.Join(sortedKeys(s), ",")
}

// writeParent creates or updates the ApplySet parent with server-side
// apply: its ID label, tooling, group-kinds and additional namespaces.
func (c *Client) writeParent(ctx context.Context, set *applySet, groupKinds, namespaces map[string]bool, opts ApplyOptions) error {
	ann := map[string]any{
		AnnotationTooling:            opts.Tooling,
		AnnotationContainsGroupKinds: joinSet(groupKinds),
	}
	if len(namespaces) > 0 {
		ann[AnnotationAdditionalNamespaces] = joinSet(namespaces)
	}
	parent := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       set.ref.Kind,
		"metadata": map[string]any{
			"name":        set.ref.Name,
			"namespace":   set.ref.Namespace,
			"labels":      map[string]any{LabelApplySetID: set.id},
			"annotations": ann,
		},
	}}
	body, err := parent.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding ApplySet parent: %w", err)
	}
	// The parent was checked to be ours (loadApplySet): take its fields.
	force := true
	_, err = c.dynamic.Resource(set.ref.resource()).Namespace(set.ref.Namespace).Patch(ctx, set.ref.Name, types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: opts.FieldManager, Force: &force})
	return classify(ctx, "updating ApplySet parent "+set.ref.ref().String(), err)
}

// prune deletes (or in a dry run, finds) the objects labelled as part of the
// plan's ApplySet that are not in the plan: for every group-kind the parent
// listed before or lists now, in the parent's namespace and every
// additional namespace, old or new. Namespaces and CRDs go last. It tries
// every object and returns the pruned ones and the errors.
func (c *Client) prune(ctx context.Context, p *plan) ([]outcome, error) {
	set := p.set
	groupKinds := union(set.prevGroupKinds, p.groupKinds)
	namespaces := union(set.prevNamespaces, p.namespaces)
	namespaces[set.ref.Namespace] = true
	selector := metav1.ListOptions{LabelSelector: LabelPartOf + "=" + set.id}
	var found, last []outcome
	for _, s := range sortedKeys(groupKinds) {
		gk := schema.ParseGroupKind(s)
		mapping, err := c.mapping(ctx, gk, "")
		if meta.IsNoMatchError(err) {
			continue // the kind is no longer served, so neither are its objects
		}
		if err != nil {
			return nil, classify(ctx, "pruning: resolving kind "+s, err)
		}
		scopes := []string{""}
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			scopes = sortedKeys(namespaces)
		}
		for _, ns := range scopes {
			list, err := c.resource(mapping, ns).List(ctx, selector)
			if err != nil {
				return nil, classify(ctx, fmt.Sprintf("pruning: listing %s in namespace %q", s, ns), err)
			}
			for i := range list.Items {
				u := &list.Items[i]
				ref := ObjectRef{Group: gk.Group, Version: mapping.GroupVersionKind.Version, Kind: gk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
				if p.keep[ref.key()] || u.GetDeletionTimestamp() != nil || u.GetLabels()[LabelPartOf] != set.id {
					continue
				}
				o := outcome{ref: ref, action: ActionPruned, live: u}
				if gk == namespaceGK || gk == crdGK {
					last = append(last, o)
				} else {
					found = append(found, o)
				}
			}
		}
	}
	var pruned []outcome
	var errs []error
	for _, o := range append(found, last...) {
		mapping, err := c.mapping(ctx, o.ref.GroupKind(), o.ref.Version)
		if err != nil {
			errs = append(errs, classify(ctx, "pruning "+o.ref.String(), err))
			continue
		}
		background := metav1.DeletePropagationBackground
		uid := o.live.GetUID()
		do := metav1.DeleteOptions{PropagationPolicy: &background, Preconditions: &metav1.Preconditions{UID: &uid}}
		if p.opts.DryRun {
			do.DryRun = []string{metav1.DryRunAll}
		}
		err = c.resource(mapping, o.ref.Namespace).Delete(ctx, o.ref.Name, do)
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			// Gone already, or replaced by a new object since the list.
		case err != nil:
			errs = append(errs, classify(ctx, "pruning "+o.ref.String(), err))
		default:
			pruned = append(pruned, o)
		}
	}
	return pruned, errors.Join(errs...)
}

// sortedKeys returns the keys of s, sorted.
func sortedKeys(s map[string]bool) []string {
	l := make([]string, 0, len(s))
	for k := range s {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

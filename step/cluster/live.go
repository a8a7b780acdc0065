package cluster

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// minListed is the fewest members of one collection that readLive reads with a LIST: for one
// object the LIST costs as much as its GET, and one more request if the object is new.
const minListed = 2

// collection is the objects of one resource in one namespace ("" for cluster-scoped
// resources).
type collection struct {
	resource  schema.GroupVersionResource
	namespace string
}

// collectionOf returns the collection of the objects of mapping in namespace.
func collectionOf(mapping *meta.RESTMapping, namespace string) collection {
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		namespace = ""
	}
	return collection{resource: mapping.Resource, namespace: namespace}
}

// String returns "resource.group in namespace ns", or "resource.group" for cluster-scoped ones.
func (col collection) String() string {
	s := col.resource.GroupResource().String()
	if col.namespace != "" {
		s += fmt.Sprintf(" in namespace %q", col.namespace)
	}
	return s
}

// liveSet holds the live objects that readLive listed, so that applyMember need not read them
// one by one. It is read-only once built; a nil liveSet holds nothing.
type liveSet struct {
	// listed maps each listed collection to its objects by name.
	listed map[collection]map[string]*unstructured.Unstructured
}

// lookup returns m's live object as listed; listed is false if m's collection was not listed
// or did not hold m: m must then be read with a GET (it is new, or not a member of the
// ApplySet yet).
func (l *liveSet) lookup(m *member) (live *unstructured.Unstructured, listed bool) {
	if l == nil || m.mapping == nil {
		return nil, false
	}
	live = l.listed[collectionOf(m.mapping, m.ref.Namespace)][m.ref.Name]
	return live, live != nil
}

// readLive lists, with the ApplySet's label selector, the collections that hold at least
// minListed of members and may already hold members of the ApplySet: their group-kind is in
// the parent's contains-group-kinds and their namespace is the parent's or one of its
// additional namespaces (a first apply lists nothing). One LIST per collection replaces a GET
// per object. Without an ApplySet it lists nothing: a LIST without a selector could return any
// number of unrelated objects; nor in a dry run (see below). Members applyAll does not send to
// the server (see there) are left out.
//
// A collection whose LIST is forbidden (RBAC may grant get and patch but not list, as
// examples/rbac does for Secrets), not found or not supported is left unlisted, so its members
// are read one by one as before; other errors end the apply, classified like the GET's.
func (c *Client) readLive(ctx context.Context, p *plan, members []*member, newNamespaces map[string]bool) (*liveSet, error) {
	live := &liveSet{listed: map[collection]map[string]*unstructured.Unstructured{}}
	if p.set == nil || (p.opts.DryRun && !p.opts.ListInDryRun) {
		// A dry run (diff) reports what would change: it reads each object just before its
		// dry-run apply, so a change made since a list cannot hide behind an older copy.
		return live, nil
	}
	type todo struct {
		col     collection
		mapping *meta.RESTMapping
		members int
	}
	var cols []*todo
	index := map[collection]*todo{}
	for _, m := range members {
		if m.mapping == nil || (p.opts.DryRun && newNamespaces[m.ref.Namespace]) || !p.set.prevGroupKinds[m.ref.GroupKind().String()] {
			continue
		}
		if m.namespaced && m.ref.Namespace != p.set.ref.Namespace && !p.set.prevNamespaces[m.ref.Namespace] {
			continue
		}
		col := collectionOf(m.mapping, m.ref.Namespace)
		t := index[col]
		if t == nil {
			t = &todo{col: col, mapping: m.mapping}
			index[col] = t
			cols = append(cols, t)
		}
		t.members++
	}
	selector := metav1.ListOptions{LabelSelector: LabelPartOf + "=" + p.set.id}
	lists := make([]map[string]*unstructured.Unstructured, len(cols))
	errs := make([]error, len(cols))
	// Every list runs to its end (a failure does not cancel the others), and the first
	// failure in collection order is reported, so the message does not depend on timing.
	var g errgroup.Group
	g.SetLimit(applyWorkers)
	for i, t := range cols {
		if t.members < minListed {
			continue
		}
		g.Go(func() error {
			list, err := c.resource(t.mapping, t.col.namespace).List(ctx, selector)
			switch {
			case apierrors.IsForbidden(err), apierrors.IsNotFound(err), apierrors.IsMethodNotSupported(err):
				return nil // read one by one
			case err != nil:
				errs[i] = classify(ctx, "reading "+t.col.String(), err)
				return errs[i]
			}
			byName := make(map[string]*unstructured.Unstructured, len(list.Items))
			for j := range list.Items {
				byName[list.Items[j].GetName()] = &list.Items[j]
			}
			lists[i] = byName
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		for _, e := range errs {
			if e != nil {
				return nil, e
			}
		}
	}
	for i, t := range cols {
		if lists[i] != nil {
			live.listed[t.col] = lists[i]
		}
	}
	return live, nil
}

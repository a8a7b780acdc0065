package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
)

const (
	defaultFieldManager = "deliver"
	defaultTooling      = "deliver/devel"
	defaultNamespace    = metav1.NamespaceDefault
	// crdEstablishTimeout bounds the wait for applied CRDs to be served.
	crdEstablishTimeout = time.Minute
	// newKindDiscoveryTimeout bounds the wait for an established CRD's kind
	// to appear in discovery.
	newKindDiscoveryTimeout = 10 * time.Second
)

var (
	namespaceGK = schema.GroupKind{Kind: "Namespace"}
	crdGK       = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
	crdGVR      = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// member is one object to apply, prepared: a copy of the input with its
// namespace defaulted (or removed) and the ApplySet label set.
type member struct {
	obj        *unstructured.Unstructured
	ref        ObjectRef
	namespaced bool
	// mapping is how to reach the object; nil while its kind is defined
	// by a CRD of this apply that is not served yet.
	mapping *meta.RESTMapping
	// autoscaler is the HorizontalPodAutoscaler that scales the object
	// ("HorizontalPodAutoscaler/ns/name"), if any; autoscalersHidden is set
	// when the autoscalers of its namespace may not be listed (see
	// findAutoscalers).
	autoscaler        string
	autoscalersHidden bool
}

// outcome is what happened, or would happen, to one object.
type outcome struct {
	ref    ObjectRef
	action Action
	live   *unstructured.Unstructured // before; nil if it did not exist
	result *unstructured.Unstructured // after (or the dry-run result)
	// replicas is set when spec.replicas was left as the cluster has it.
	replicas *ReplicasLeft
}

// plan is an apply, prepared and checked before anything changes.
type plan struct {
	opts ApplyOptions
	// stage1 holds Namespaces and CRDs, stage2 everything else, both in
	// input order.
	stage1, stage2 []*member
	keep           map[key]bool
	set            *applySet // nil without ApplySet
	// groupKinds and namespaces are the ApplySet's current group-kinds
	// ("Kind.group") and the member namespaces other than the parent's.
	groupKinds, namespaces map[string]bool
	// warnings are what the apply could not check (see ApplyResult.Warnings).
	warnings []string
}

// Apply applies objs with server-side apply and returns what it did to each
// object. It does not modify objs.
//
// It applies Namespaces and CustomResourceDefinitions first and waits until
// every CRD is Established, then applies everything else. Namespaced objects
// without a namespace get opts.DefaultNamespace; cluster-scoped objects lose
// any namespace they carry. With opts.ApplySet, every object is labelled as
// part of the ApplySet, and the parent is created or updated (after the
// Namespaces, before the other objects) to list a superset of the previous
// and current group-kinds and namespaces; with opts.Prune, the ApplySet's
// objects that are not in objs are then deleted (propagation Background) and
// the parent is updated to the exact current sets. Objects without the
// ApplySet's label are never touched, and a parent that belongs to another
// tool is refused before anything changes.
//
// With opts.DryRun every request is a server-side dry run and nothing
// changes; custom resources of CRDs that do not exist yet, and objects in
// Namespaces that do not exist yet, are reported as created without asking
// the server.
//
// With opts.AutoscaledReplicas and opts.KeepForeignReplicas, spec.replicas of
// workloads that something else scales is left as the cluster has it (see
// there, and AppliedObject.Replicas).
//
// Errors wrap ErrInvalid (objects the server rejects, unknown kinds),
// ErrUnauthorized, ErrUnreachable or ErrApply; a field conflict without
// ForceConflicts is a *ConflictError. On error, the result lists what was
// applied before it.
func (c *Client) Apply(ctx context.Context, objs []*unstructured.Unstructured, opts ApplyOptions) (ApplyResult, error) {
	ctx = quiet(ctx)
	res := ApplyResult{DryRun: opts.DryRun}
	p, err := c.plan(ctx, objs, opts)
	if err != nil {
		return res, err
	}
	res.Warnings = p.warnings
	outs, pruned, err := c.execute(ctx, p)
	for _, o := range outs {
		res.Objects = append(res.Objects, AppliedObject{Ref: o.ref, Action: o.action, Object: o.result, Replicas: o.replicas})
	}
	for _, o := range pruned {
		res.Pruned = append(res.Pruned, o.ref)
	}
	return res, err
}

// withDefaults fills in the defaults documented on ApplyOptions.
func (o ApplyOptions) withDefaults() ApplyOptions {
	if o.FieldManager == "" {
		o.FieldManager = defaultFieldManager
	}
	if o.DefaultNamespace == "" {
		o.DefaultNamespace = defaultNamespace
	}
	if o.Tooling == "" {
		o.Tooling = defaultTooling
	}
	if o.ApplySet.Name != "" {
		if o.ApplySet.Namespace == "" {
			o.ApplySet.Namespace = o.DefaultNamespace
		}
		if o.ApplySet.Kind == "" {
			o.ApplySet.Kind = "Secret"
		}
	}
	return o
}

// plan prepares objs: it checks them, resolves their kinds, defaults
// namespaces, labels them, splits them into stages, and reads the ApplySet
// parent. It changes nothing in the cluster.
func (c *Client) plan(ctx context.Context, objs []*unstructured.Unstructured, opts ApplyOptions) (*plan, error) {
	opts = opts.withDefaults()
	p := &plan{opts: opts, keep: map[key]bool{}, groupKinds: map[string]bool{}, namespaces: map[string]bool{}}
	if opts.Prune && opts.ApplySet.Name == "" {
		return nil, fmt.Errorf("planning apply: %w: pruning needs an ApplySet", ErrInvalid)
	}
	var setID string
	if opts.ApplySet.Name != "" {
		if k := opts.ApplySet.Kind; k != "Secret" && k != "ConfigMap" {
			return nil, fmt.Errorf("planning apply: %w: ApplySet parent kind %q: want Secret or ConfigMap", ErrInvalid, k)
		}
		setID = opts.ApplySet.ID()
	}
	members := make([]*member, 0, len(objs))
	for i, o := range objs {
		if o == nil {
			return nil, fmt.Errorf("planning apply: %w: object %d is nil", ErrInvalid, i)
		}
		m := &member{ref: RefOf(o)}
		if m.ref.Kind == "" || m.ref.Version == "" || m.ref.Name == "" {
			return nil, fmt.Errorf("planning apply: %w: object %d (%s) needs apiVersion, kind and metadata.name", ErrInvalid, i, m.ref)
		}
		// A JSON round trip copies o and normalises its numbers (kustomize
		// and YAML decoders produce int or float64; unstructured wants int64).
		data, err := json.Marshal(o.Object)
		if err != nil {
			return nil, fmt.Errorf("planning apply: encoding %s: %w: %w", m.ref, ErrInvalid, err)
		}
		m.obj = &unstructured.Unstructured{}
		if err := m.obj.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("planning apply: decoding %s: %w: %w", m.ref, ErrInvalid, err)
		}
		members = append(members, m)
	}
	// Kinds defined by CRDs of this apply.
	type crdKind struct {
		crd        string
		namespaced bool
		served     []string
	}
	crdKinds := map[schema.GroupKind]crdKind{}
	for _, m := range members {
		if m.ref.GroupKind() != crdGK {
			continue
		}
		group, _, _ := unstructured.NestedString(m.obj.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(m.obj.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(m.obj.Object, "spec", "scope")
		k := crdKind{crd: m.ref.Name, namespaced: scope == "Namespaced"}
		versions, _, _ := unstructured.NestedSlice(m.obj.Object, "spec", "versions")
		for _, v := range versions {
			if v, ok := v.(map[string]any); ok && v["served"] == true {
				name, _ := v["name"].(string)
				k.served = append(k.served, name)
			}
		}
		crdKinds[schema.GroupKind{Group: group, Kind: kind}] = k
	}
	for _, m := range members {
		gk := m.ref.GroupKind()
		k, definedHere := crdKinds[gk]
		if definedHere {
			m.namespaced = k.namespaced // the mapping is resolved once the CRD is applied
		} else {
			mp, err := c.mapping(ctx, gk, m.ref.Version)
			if err != nil {
				return nil, classify(ctx, "resolving the kind of "+m.ref.String(), err)
			}
			m.mapping = mp
			m.namespaced = mp.Scope.Name() == meta.RESTScopeNameNamespace
		}
		switch {
		case !m.namespaced:
			m.obj.SetNamespace("")
		case m.obj.GetNamespace() == "":
			m.obj.SetNamespace(opts.DefaultNamespace)
		}
		m.ref.Namespace = m.obj.GetNamespace()
		if definedHere && !slices.Contains(k.served, m.ref.Version) {
			return nil, fmt.Errorf("planning apply: %w: %s: CustomResourceDefinition %s does not serve version %q (served: %s)",
				ErrInvalid, m.ref, k.crd, m.ref.Version, strings.Join(k.served, ", "))
		}
		for _, f := range [][]string{{"metadata", "resourceVersion"}, {"metadata", "uid"}, {"metadata", "generation"},
			{"metadata", "managedFields"}, {"metadata", "selfLink"}} {
			unstructured.RemoveNestedField(m.obj.Object, f...)
		}
		if p.keep[m.ref.key()] {
			return nil, fmt.Errorf("planning apply: %w: %s appears twice", ErrInvalid, m.ref)
		}
		p.keep[m.ref.key()] = true
		if setID != "" {
			if m.ref.key() == opts.ApplySet.ref().key() {
				return nil, fmt.Errorf("planning apply: %w: %s is the ApplySet parent and cannot be one of the applied objects", ErrInvalid, m.ref)
			}
			labels := m.obj.GetLabels()
			if labels == nil {
				labels = map[string]string{}
			}
			labels[LabelPartOf] = setID
			m.obj.SetLabels(labels)
			p.groupKinds[gk.String()] = true
			if m.namespaced && m.ref.Namespace != opts.ApplySet.Namespace {
				p.namespaces[m.ref.Namespace] = true
			}
		}
		if gk == namespaceGK || gk == crdGK {
			p.stage1 = append(p.stage1, m)
		} else {
			p.stage2 = append(p.stage2, m)
		}
	}
	if opts.AutoscaledReplicas {
		warnings, err := c.findAutoscalers(ctx, members)
		if err != nil {
			return nil, err
		}
		p.warnings = warnings
	}
	if setID != "" {
		set, err := c.loadApplySet(ctx, opts)
		if err != nil {
			return nil, err
		}
		p.set = set
	}
	return p, nil
}

// execute applies a plan (see Apply) and returns the outcome of every
// applied object and the pruned objects.
func (c *Client) execute(ctx context.Context, p *plan) (outs, pruned []outcome, err error) {
	opts := p.opts
	newNamespaces := map[string]bool{} // dry run: namespaces that would be created
	var crds []string
	crdChanged := false
	live, err := c.readLive(ctx, p, p.stage1, newNamespaces)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range p.stage1 {
		o, err := c.applyMember(ctx, m, opts, live)
		if err != nil {
			return outs, nil, err
		}
		outs = append(outs, o)
		switch m.ref.GroupKind() {
		case namespaceGK:
			if o.action == ActionCreated {
				newNamespaces[m.ref.Name] = true
			}
		case crdGK:
			crds = append(crds, m.ref.Name)
			crdChanged = crdChanged || o.action != ActionUnchanged
		}
	}
	if !opts.DryRun && len(crds) > 0 {
		if err := c.waitEstablished(ctx, crds); err != nil {
			return outs, nil, err
		}
		if crdChanged {
			c.mapper.ResetWithContext(ctx)
		}
	}
	for _, m := range p.stage2 {
		if m.mapping != nil {
			continue
		}
		mp, err := c.mapping(ctx, m.ref.GroupKind(), m.ref.Version)
		if err != nil && meta.IsNoMatchError(err) && !opts.DryRun {
			mp, err = c.mappingOfNewKind(ctx, m.ref)
		}
		switch {
		case err == nil:
			m.mapping = mp
		case opts.DryRun && meta.IsNoMatchError(err):
			// Its CRD is not served yet: it would be created.
		default:
			return outs, nil, classify(ctx, "resolving the kind of "+m.ref.String(), err)
		}
	}
	if p.set != nil && !opts.DryRun {
		if err := c.writeParent(ctx, p.set, union(p.set.prevGroupKinds, p.groupKinds), union(p.set.prevNamespaces, p.namespaces), opts); err != nil {
			return outs, nil, err
		}
	}
	live, err = c.readLive(ctx, p, p.stage2, newNamespaces)
	if err != nil {
		return outs, nil, err
	}
	stage2, err := c.applyAll(ctx, p.stage2, opts, newNamespaces, live)
	outs = append(outs, stage2...)
	if err != nil {
		return outs, nil, err
	}
	if !opts.Prune {
		return outs, nil, nil
	}
	pruned, err = c.prune(ctx, p)
	if err != nil {
		return outs, pruned, err
	}
	if !opts.DryRun {
		if err := c.writeParent(ctx, p.set, p.groupKinds, p.namespaces, opts); err != nil {
			return outs, pruned, err
		}
	}
	return outs, pruned, nil
}

// applyWorkers bounds the requests Apply has in flight at once.
const applyWorkers = 8

// applyAll applies members concurrently (at most applyWorkers at a time) and returns their
// outcomes in the members' order; live holds the live objects read before (see readLive). On
// error it returns the outcomes of the members before the first that failed, and that member's
// error.
func (c *Client) applyAll(ctx context.Context, members []*member, opts ApplyOptions, newNamespaces map[string]bool, live *liveSet) ([]outcome, error) {
	results := make([]outcome, len(members))
	errs := make([]error, len(members))
	// stop only ends the handing out of work after a failure; requests in flight keep ctx, so
	// their errors are their own, never a cancellation of ours.
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	var g errgroup.Group
	g.SetLimit(applyWorkers)
	for i, m := range members {
		if stop.Err() != nil {
			break
		}
		g.Go(func() error {
			if stop.Err() != nil {
				return nil // handed out as another failed: left undone
			}
			if opts.DryRun && (m.mapping == nil || newNamespaces[m.ref.Namespace]) {
				results[i] = outcome{ref: m.ref, action: ActionCreated, result: m.obj}
				return nil
			}
			results[i], errs[i] = c.applyMember(ctx, m, opts, live)
			if errs[i] != nil {
				cancel() // stop handing out work; members in flight finish
			}
			return errs[i]
		})
	}
	// The errors are read in the members' order below (firstError), not in the order they
	// happened: Wait's own is the earliest in time.
	_ = g.Wait()
	var outs []outcome
	for i := range members {
		if errs[i] != nil || results[i].ref == (ObjectRef{}) {
			return outs, firstError(ctx, errs)
		}
		outs = append(outs, results[i])
	}
	return outs, nil
}

// firstError returns the first non-nil error of errs, else why ctx ended.
func firstError(ctx context.Context, errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return classify(ctx, "applying", context.Cause(ctx))
}

// resource returns the dynamic client for objects of mapping in namespace
// (ignored for cluster-scoped resources).
func (c *Client) resource(mapping *meta.RESTMapping, namespace string) dynamic.ResourceInterface {
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		return c.dynamic.Resource(mapping.Resource).Namespace(namespace)
	}
	return c.dynamic.Resource(mapping.Resource)
}

// applyMember takes the live object from known (see readLive) or else reads it, applies m, and
// compares: created if it did not exist (or was replaced by another object since it was read),
// unchanged if its resourceVersion or its content without volatile fields (see stripVolatile)
// did not change, configured otherwise.
func (c *Client) applyMember(ctx context.Context, m *member, opts ApplyOptions, known *liveSet) (outcome, error) {
	ri := c.resource(m.mapping, m.ref.Namespace)
	live, listed := known.lookup(m)
	if !listed {
		var err error
		live, err = ri.Get(ctx, m.ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			live = nil
		case err != nil:
			return outcome{}, classify(ctx, "reading "+m.ref.String(), err)
		}
	}
	rp := planReplicas(m, live, opts)
	body, err := rp.send.MarshalJSON()
	if err != nil {
		return outcome{}, fmt.Errorf("encoding %s: %w: %w", m.ref, ErrInvalid, err)
	}
	po := metav1.PatchOptions{FieldManager: opts.FieldManager, FieldValidation: metav1.FieldValidationStrict}
	if opts.ForceConflicts {
		force := true
		po.Force = &force
	}
	if opts.DryRun {
		po.DryRun = []string{metav1.DryRunAll}
	}
	if rp.first != nil {
		// A conflict means another manager changed spec.replicas since it was read, and owns it
		// now: the apply below cannot reset it, and reports the conflict if it has to.
		var ce *ConflictError
		if err := applyReplicasOnly(ctx, ri, m, rp.first, opts); err != nil && !errors.As(err, &ce) {
			return outcome{}, err
		}
	}
	result, err := ri.Patch(ctx, m.ref.Name, types.ApplyPatchType, body, po)
	if err != nil {
		if ce := conflictError(m.ref, err); ce != nil {
			ce.hint = replicasHint(m, live, ce, opts)
			return outcome{}, ce
		}
		return outcome{}, classify(ctx, "applying "+m.ref.String(), err)
	}
	if rp.release {
		if err := applyReplicasOnly(ctx, ri, m, nil, opts); err != nil {
			return outcome{}, err
		}
	}
	o := outcome{ref: m.ref, live: live, result: result, action: ActionConfigured, replicas: rp.left}
	switch {
	case live == nil || live.GetUID() != result.GetUID():
		// The UIDs differ if the object was deleted and created again since it was read.
		o.action = ActionCreated
	case !opts.DryRun && live.GetResourceVersion() == result.GetResourceVersion():
		o.action = ActionUnchanged
	case reflect.DeepEqual(stripVolatile(live), stripVolatile(result)):
		// Only managedFields changed (a first apply to an object created
		// otherwise, or taking over a field with the same value), or, in a
		// dry run, nothing.
		o.action = ActionUnchanged
	}
	return o, nil
}

// stripVolatile returns a copy of u's content without the fields the server
// maintains: status, metadata.managedFields, resourceVersion, generation,
// uid and creationTimestamp.
func stripVolatile(u *unstructured.Unstructured) map[string]any {
	if u == nil {
		return nil
	}
	c := u.DeepCopy().Object
	unstructured.RemoveNestedField(c, "status")
	for _, f := range []string{"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"} {
		unstructured.RemoveNestedField(c, "metadata", f)
	}
	return c
}

// waitEstablished waits until the CRDs names are Established, for at most
// crdEstablishTimeout.
func (c *Client) waitEstablished(ctx context.Context, names []string) error {
	wctx, cancel := context.WithTimeout(ctx, crdEstablishTimeout)
	defer cancel()
	for _, name := range names {
		var last string
		err := wait.PollUntilContextCancel(wctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			u, err := c.dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				if ctx.Err() != nil {
					return false, nil
				}
				return false, classify(ctx, "reading CustomResourceDefinition/"+name, err)
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, ci := range conds {
				cond, _ := ci.(map[string]any)
				typ, _ := cond["type"].(string)
				status, _ := cond["status"].(string)
				msg, _ := cond["message"].(string)
				switch {
				case typ == "Established" && status == "True":
					return true, nil
				case typ == "NamesAccepted" && status == "False":
					return false, fmt.Errorf("waiting for CustomResourceDefinition/%s: %w: names not accepted: %s", name, ErrInvalid, msg)
				case typ == "Established":
					last = msg
				}
			}
			return false, nil
		})
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return fmt.Errorf("waiting for CustomResourceDefinition/%s to be established: %w", name, ctx.Err())
		case wait.Interrupted(err):
			return fmt.Errorf("waiting for CustomResourceDefinition/%s: %w: not established after %s (%s)", name, ErrApply, crdEstablishTimeout, last)
		default:
			return err
		}
	}
	return nil
}

// mappingOfNewKind resolves the kind of ref, defined by a CRD that was just
// established: discovery can lag behind the Established condition for a
// moment, so it resets the discovery and retries for up to
// newKindDiscoveryTimeout while the kind is unknown.
func (c *Client) mappingOfNewKind(ctx context.Context, ref ObjectRef) (*meta.RESTMapping, error) {
	var mp *meta.RESTMapping
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, newKindDiscoveryTimeout, false, func(ctx context.Context) (bool, error) {
		c.mapper.ResetWithContext(ctx)
		mp, last = c.mapping(ctx, ref.GroupKind(), ref.Version)
		if meta.IsNoMatchError(last) {
			return false, nil
		}
		return last == nil, last
	})
	if err != nil && last != nil {
		return nil, last
	}
	return mp, err
}

// union returns the keys of a and b.
func union(a, b map[string]bool) map[string]bool {
	u := make(map[string]bool, len(a)+len(b))
	for k := range a {
		u[k] = true
	}
	for k := range b {
		u[k] = true
	}
	return u
}

package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// This file is what Apply does with spec.replicas of the workloads that something else scales
// (ApplyOptions.AutoscaledReplicas and KeepForeignReplicas).

var (
	// scalableKinds are the workloads whose spec.replicas an autoscaler sets through their scale
	// subresource.
	scalableKinds = map[schema.GroupKind]bool{
		{Group: "apps", Kind: "Deployment"}:  true,
		{Group: "apps", Kind: "StatefulSet"}: true,
		{Group: "apps", Kind: "ReplicaSet"}:  true,
		{Kind: "ReplicationController"}:      true,
	}
	hpaGK  = schema.GroupKind{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}
	hpaGVR = schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}
)

// handoverManager is the field manager that holds spec.replicas between deliver giving it up and
// the autoscaler taking it (see ApplyOptions.AutoscaledReplicas).
func handoverManager(opts ApplyOptions) string { return opts.FieldManager + "-handover" }

// givenReplicas returns m's spec.replicas when m is a workload an autoscaler can scale and sets it.
func givenReplicas(m *member) (int64, bool) {
	if !scalableKinds[m.ref.GroupKind()] {
		return 0, false
	}
	n, found, err := unstructured.NestedInt64(m.obj.Object, "spec", "replicas")
	return n, found && err == nil
}

// findAutoscalers marks the members that a HorizontalPodAutoscaler targets (m.autoscaler): those
// of the members themselves, and those in the namespaces of the members that set spec.replicas,
// listed once per namespace. A namespace whose HorizontalPodAutoscalers may not be listed marks
// its members m.autoscalersHidden and adds a warning; any other error of the list ends the apply.
func (c *Client) findAutoscalers(ctx context.Context, members []*member) (warnings []string, err error) {
	targets := map[key]string{}
	add := func(hpa *unstructured.Unstructured) {
		ref, _, _ := unstructured.NestedStringMap(hpa.Object, "spec", "scaleTargetRef")
		gv, err := schema.ParseGroupVersion(ref["apiVersion"])
		if err != nil || ref["kind"] == "" || ref["name"] == "" {
			return // the autoscaler cannot scale anything either
		}
		by := ObjectRef{Kind: hpaGK.Kind, Namespace: hpa.GetNamespace(), Name: hpa.GetName()}.String()
		targets[key{group: gv.Group, kind: ref["kind"], namespace: hpa.GetNamespace(), name: ref["name"]}] = by
	}
	var namespaces []string
	for _, m := range members {
		if m.ref.GroupKind() == hpaGK {
			add(m.obj)
		}
		if _, ok := givenReplicas(m); ok && !slices.Contains(namespaces, m.ref.Namespace) {
			namespaces = append(namespaces, m.ref.Namespace)
		}
	}
	hidden := map[string]bool{}
	for _, ns := range namespaces {
		list, err := c.dynamic.Resource(hpaGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		switch {
		case apierrors.IsForbidden(err):
			hidden[ns] = true
			warnings = append(warnings, fmt.Sprintf("HorizontalPodAutoscalers in namespace %s may not be listed (%v), so spec.replicas of its workloads is applied as given, and conflicts with an autoscaler that scales them; grant list on horizontalpodautoscalers.autoscaling there", ns, err))
			continue
		case apierrors.IsNotFound(err):
			continue // autoscaling/v2 not served: no autoscalers to know of
		case err != nil:
			return nil, classify(ctx, "listing HorizontalPodAutoscalers in namespace "+ns, err)
		}
		for i := range list.Items {
			add(&list.Items[i])
		}
	}
	for _, m := range members {
		if _, ok := givenReplicas(m); !ok {
			continue
		}
		m.autoscaler = targets[m.ref.key()]
		m.autoscalersHidden = m.autoscaler == "" && hidden[m.ref.Namespace]
	}
	return warnings, nil
}

// replicasPlan is what to do with a member's spec.replicas.
type replicasPlan struct {
	// send is the object to apply: the member's, or a copy with spec.replicas changed or removed.
	send *unstructured.Unstructured
	// left reports that spec.replicas was left as the cluster has it.
	left *ReplicasLeft
	// first, when set, is applied by the handover manager before the apply: spec.replicas
	// alone, at this value. It hands the field over to an autoscaler (at its live value, so
	// that the apply without it does not reset it), or takes it back from the handover once no
	// autoscaler targets the workload (at the given value, so that the apply shares it).
	first *int64
	// release makes the handover manager give up its fields after the apply.
	release bool
}

// planReplicas decides what m's apply does with spec.replicas, given its live object (nil if it
// does not exist), following ApplyOptions.AutoscaledReplicas and KeepForeignReplicas.
func planReplicas(m *member, live *unstructured.Unstructured, opts ApplyOptions) replicasPlan {
	p := replicasPlan{send: m.obj}
	given, ok := givenReplicas(m)
	if !ok || live == nil {
		return p // a new workload starts with the given count, an autoscaler's or not
	}
	have, _, _ := unstructured.NestedInt64(live.Object, "spec", "replicas")
	ours, handed, others := replicasOwners(live, opts)
	switch {
	case opts.AutoscaledReplicas && m.autoscaler != "":
		p.left = &ReplicasLeft{By: m.autoscaler, Autoscaled: true, Live: have, Given: given}
		switch {
		case ours && opts.DryRun:
			// What the handover leads to: the field keeps its value.
			p.send = withReplicas(m.obj, &have)
		case ours:
			p.first, p.send = &have, withReplicas(m.obj, nil)
		default:
			p.send = withReplicas(m.obj, nil)
		}
	case handed && len(others) == 0:
		// An autoscaler had it, and is gone before it ever scaled.
		switch {
		case !opts.DryRun:
			p.first, p.release = &given, true
		case given != have && !opts.ForceConflicts:
			// A dry run cannot hand it back first: compare without the change rather than
			// report a conflict with deliver's own handover.
			p.send = withReplicas(m.obj, &have)
		}
	case opts.ForceConflicts && opts.KeepForeignReplicas && !ours && len(others) > 0 && given != have:
		p.left = &ReplicasLeft{By: strings.Join(others, ", "), Live: have, Given: given}
		p.send = withReplicas(m.obj, nil)
	}
	return p
}

// replicasOwners says who owns live's spec.replicas: FieldManager's apply (ours), the handover
// manager's (handed), and the other field managers, described (see describeManager).
func replicasOwners(live *unstructured.Unstructured, opts ApplyOptions) (ours, handed bool, others []string) {
	if live == nil {
		return false, false, nil
	}
	for _, e := range live.GetManagedFields() {
		if !ownsReplicas(e) {
			continue
		}
		apply := e.Operation == metav1.ManagedFieldsOperationApply && e.Subresource == ""
		switch {
		case apply && e.Manager == opts.FieldManager:
			ours = true
		case apply && e.Manager == handoverManager(opts):
			handed = true
		default:
			others = append(others, describeManager(e))
		}
	}
	return ours, handed, others
}

// ownsReplicas reports whether e owns spec.replicas.
func ownsReplicas(e metav1.ManagedFieldsEntry) bool {
	if e.FieldsV1 == nil {
		return false
	}
	var fields struct {
		Spec map[string]json.RawMessage `json:"f:spec"`
	}
	if err := json.Unmarshal(e.FieldsV1.GetRawBytes(), &fields); err != nil {
		return false
	}
	_, ok := fields.Spec["f:replicas"]
	return ok
}

// describeManager names a field manager the way a person recognises it: `field manager
// "kubectl"`, plus the subresource it wrote through, if any.
func describeManager(e metav1.ManagedFieldsEntry) string {
	s := fmt.Sprintf("field manager %q", e.Manager)
	if e.Subresource != "" {
		s += fmt.Sprintf(" (through the %s subresource)", e.Subresource)
	}
	return s
}

// withReplicas returns a copy of u with spec.replicas set to n, or without it when n is nil.
func withReplicas(u *unstructured.Unstructured, n *int64) *unstructured.Unstructured {
	c := u.DeepCopy()
	if n == nil {
		unstructured.RemoveNestedField(c.Object, "spec", "replicas")
	} else {
		_ = unstructured.SetNestedField(c.Object, *n, "spec", "replicas") // spec is a map: it cannot fail
	}
	return c
}

// applyReplicasOnly applies, as the handover manager, m's identity with spec.replicas set to n,
// or with nothing else (giving up every field the handover manager held) when n is nil. A
// conflict is reported as *ConflictError; the caller decides what it means.
func applyReplicasOnly(ctx context.Context, ri dynamic.ResourceInterface, m *member, n *int64, opts ApplyOptions) error {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(m.obj.GetAPIVersion())
	u.SetKind(m.obj.GetKind())
	u.SetName(m.obj.GetName())
	u.SetNamespace(m.obj.GetNamespace())
	if n != nil {
		_ = unstructured.SetNestedField(u.Object, *n, "spec", "replicas")
	}
	body, err := u.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding spec.replicas of %s: %w: %w", m.ref, ErrInvalid, err)
	}
	_, err = ri.Patch(ctx, m.ref.Name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: handoverManager(opts)})
	if err == nil {
		return nil
	}
	if ce := conflictError(m.ref, err); ce != nil {
		return ce
	}
	what := "handing spec.replicas of " + m.ref.String() + " over to " + m.autoscaler
	if n == nil || m.autoscaler == "" {
		what = "taking spec.replicas of " + m.ref.String() + " back from field manager " + handoverManager(opts)
	}
	return classify(ctx, what, err)
}

// replicasHint explains a conflict on spec.replicas of m, whose live object is live, or
// returns "" if there is none.
func replicasHint(m *member, live *unstructured.Unstructured, ce *ConflictError, opts ApplyOptions) string {
	if _, ok := givenReplicas(m); !ok || !slices.ContainsFunc(ce.Conflicts, func(c FieldConflict) bool { return c.Field == ".spec.replicas" }) {
		return ""
	}
	var hints []string
	if m.autoscalersHidden {
		hints = append(hints, fmt.Sprintf("HorizontalPodAutoscalers in namespace %s may not be listed, so whether one scales %s is unknown; grant list on horizontalpodautoscalers.autoscaling and deliver leaves replicas to it", m.ref.Namespace, m.ref.Name))
	}
	if ours, _, _ := replicasOwners(live, opts); ours {
		hints = append(hints, "spec.replicas is shared with that manager, which set the same count before: --force-conflicts applies the new one")
	} else if opts.KeepForeignReplicas {
		hints = append(hints, "spec.replicas was changed outside the config repo: --force-conflicts applies the rest and keeps the live replica count")
	}
	return strings.Join(hints, "; ")
}

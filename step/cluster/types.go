package cluster

import (
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ObjectRef identifies an object in the cluster.
type ObjectRef struct {
	Group     string // API group, "" for the core group
	Version   string // API version; may be empty, meaning the preferred one
	Kind      string
	Namespace string // "" for cluster-scoped objects
	Name      string
}

// String returns "Kind/namespace/name", or "Kind/name" for cluster-scoped
// objects, e.g. "Deployment/demo/web" or "Namespace/demo".
func (r ObjectRef) String() string {
	if r.Namespace == "" {
		return r.Kind + "/" + r.Name
	}
	return r.Kind + "/" + r.Namespace + "/" + r.Name
}

// GroupKind returns the object's group and kind.
func (r ObjectRef) GroupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.Group, Kind: r.Kind}
}

// RefOf returns the reference of u as it stands (its namespace is not
// defaulted).
func RefOf(u *unstructured.Unstructured) ObjectRef {
	gvk := u.GroupVersionKind()
	return ObjectRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// key identifies an object regardless of its API version.
type key struct {
	group, kind, namespace, name string
}

func (r ObjectRef) key() key { return key{r.Group, r.Kind, r.Namespace, r.Name} }

// Action is what Apply did, or in a dry run would do, to an object.
type Action string

// Actions.
const (
	// ActionCreated means the object did not exist.
	ActionCreated Action = "created"
	// ActionConfigured means the object existed and changed.
	ActionConfigured Action = "configured"
	// ActionUnchanged means the object existed and did not change.
	ActionUnchanged Action = "unchanged"
	// ActionPruned means the object was deleted because it left the
	// ApplySet (used by Diff; Apply lists pruned objects separately).
	ActionPruned Action = "pruned"
)

// ApplySetRef names the parent object of an ApplySet (KEP-3659).
type ApplySetRef struct {
	// Name of the parent object, e.g. "deliver-production". Empty means
	// no ApplySet: no labels, no parent, and no pruning.
	Name string
	// Namespace of the parent; empty means ApplyOptions.DefaultNamespace.
	Namespace string
	// Kind of the parent: "Secret" (the default) or "ConfigMap".
	Kind string
}

// ApplyOptions control Apply and Diff.
type ApplyOptions struct {
	// FieldManager is the server-side apply field manager; default
	// "deliver".
	FieldManager string
	// ForceConflicts takes over fields that other field managers own.
	// Without it such a conflict fails with a *ConflictError.
	ForceConflicts bool
	// DefaultNamespace is the namespace of namespaced objects that have
	// none; default "default". Cluster-scoped objects never get one.
	DefaultNamespace string
	// Prune deletes the objects of the ApplySet that are not in this apply.
	// It needs ApplySet.
	Prune bool
	// ApplySet is the ApplySet of the applied objects. When set, Apply
	// labels every object applyset.kubernetes.io/part-of=<id> and creates
	// or updates the parent, also without Prune, so that a later Prune
	// knows what was applied.
	ApplySet ApplySetRef
	// DryRun makes Apply a server-side dry run (dryRun=All): nothing is
	// changed, not even the ApplySet parent, and the result says what would
	// be done.
	DryRun bool
	// ListInDryRun makes a dry run read the ApplySet's members as an apply
	// does, with one LIST per kind and namespace, instead of each object
	// just before its dry-run apply. For a check before an apply (conflicts
	// are still judged by the server on the live object), not for a diff
	// that must show the newest state of each object.
	ListInDryRun bool
	// Tooling is the applyset.kubernetes.io/tooling value, "name/version";
	// default "deliver/devel". Apply refuses a parent whose tooling has
	// another name.
	Tooling string
	// AutoscaledReplicas leaves spec.replicas of a Deployment, StatefulSet,
	// ReplicaSet or ReplicationController that a HorizontalPodAutoscaler
	// targets (one in its namespace, or one of the applied objects) to that
	// autoscaler: the applied object goes without spec.replicas once the
	// workload exists (a new one is created with the given count). When
	// FieldManager owns spec.replicas, Apply first hands it over (an apply
	// of spec.replicas alone, at its live value, by FieldManager +
	// "-handover"), so that dropping the field does not reset it to its
	// default. See AppliedObject.Replicas and ApplyResult.Warnings.
	AutoscaledReplicas bool
	// KeepForeignReplicas makes ForceConflicts take over every field but
	// spec.replicas of those workloads when another field manager set it to
	// a value other than the given one and FieldManager does not own it
	// (kubectl scale, an autoscaler Apply does not know): spec.replicas
	// keeps its live value, and AppliedObject.Replicas says so. Without
	// ForceConflicts such a field is a conflict like any other.
	KeepForeignReplicas bool
}

// ReplicasLeft says that Apply left a workload's spec.replicas as the
// cluster has it instead of applying the given value.
type ReplicasLeft struct {
	// By is who scales the workload: "HorizontalPodAutoscaler/ns/name"
	// when Autoscaled, else the field managers that set spec.replicas,
	// e.g. `field manager "kubectl" (through the scale subresource)`.
	By         string
	Autoscaled bool
	// Live is spec.replicas in the cluster, Given the applied object's.
	Live, Given int64
}

// AppliedObject is the outcome of applying one object.
type AppliedObject struct {
	Ref    ObjectRef
	Action Action
	// Object is the object as the server returned it from the apply (nil for objects a dry
	// run reports without asking the server). Wait starts from it.
	Object *unstructured.Unstructured
	// Replicas is set when spec.replicas was left as the cluster has it
	// (see ApplyOptions.AutoscaledReplicas and KeepForeignReplicas).
	Replicas *ReplicasLeft
}

// ApplyResult is the outcome of Apply.
type ApplyResult struct {
	// Objects are the applied objects, in the order they were applied
	// (Namespaces and CRDs first), with their defaulted namespaces.
	Objects []AppliedObject
	// Pruned are the objects deleted (or, in a dry run, that would be)
	// because they left the ApplySet.
	Pruned []ObjectRef
	// DryRun is set when nothing was changed: the actions are what would
	// have happened.
	DryRun bool
	// Warnings are what Apply could not check, e.g. HorizontalPodAutoscalers
	// it may not list; each is a sentence.
	Warnings []string
}

// ObjectDiff is how applying an object would change it.
type ObjectDiff struct {
	Ref ObjectRef
	// Action is ActionCreated, ActionConfigured or ActionPruned.
	Action Action
	// Diff is a unified diff of the object's YAML from the live object
	// ("live/<ref>") to the result of the apply ("applied/<ref>"), without
	// status, metadata.managedFields, resourceVersion, generation, uid
	// and creationTimestamp.
	Diff string
}

// String returns the diff, ending with a newline (empty if there is none).
func (d ObjectDiff) String() string {
	if d.Diff == "" || strings.HasSuffix(d.Diff, "\n") {
		return d.Diff
	}
	return d.Diff + "\n"
}

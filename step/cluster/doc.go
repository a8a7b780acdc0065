// Package cluster applies an environment's rendered objects to a Kubernetes
// cluster with server-side apply, prunes the objects that left the overlay
// through a KEP-3659 ApplySet, and waits with kstatus until everything is
// Current.
//
// Connect builds a Client from a kubeconfig (given as data, as a path, through
// $KUBECONFIG, in-cluster, or ~/.kube/config, in that order) without making a
// request. A Client discovers the API server's resources once, on first use,
// and shares that discovery among Apply, Diff and Wait; it resets it only after
// it applied CustomResourceDefinitions.
//
// Apply works in stages: Namespaces and CustomResourceDefinitions first (it
// waits until each CRD is Established), then everything else. With an
// ApplySet it labels every object it applies and maintains the ApplySet's
// parent object, so that a later run with pruning knows what was applied
// before. Diff and Apply's dry run use server-side dry run and change nothing.
// Apply can leave spec.replicas of a workload to the HorizontalPodAutoscaler
// that scales it, and keep a count another field manager set when forcing
// conflicts (ApplyOptions.AutoscaledReplicas, KeepForeignReplicas).
//
// The package never runs kubectl, writes nothing to standard output or error,
// and never includes kubeconfig contents or credentials in its errors. Errors
// wrap one of the sentinels ErrApply, ErrRolloutFailed, ErrUnauthorized,
// ErrUnreachable and ErrInvalid, or the context's error when ctx ends.
package cluster

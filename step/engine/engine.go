// Package engine hands an environment's rollout to a GitOps engine that runs in the cluster,
// instead of applying the overlay itself. After deliver pushes a commit, an Engine asks the
// engine to fetch the config repo now and waits, with progress lines, until the engine has
// applied that commit (or a later one that contains it: other pipelines may push after us) and
// the workloads that carry the deployed images are rolled out. A failure the engine reports is
// a failed rollout, quoted in the engine's own words; an engine object that is switched off
// (suspended) is refused before anything is pushed.
//
// Package flux implements Engine for a Flux Kustomization and its GitRepository; another engine
// (an Argo CD Application, read through status.sync.revision and status.health, refreshed with
// its refresh annotation) implements the same interface beside it. The direct apply (package
// cluster's Apply and Wait) does not go through this package.
package engine

import (
	"context"
	"errors"
	"time"

	"github.com/deliverhq/deliver/step/cluster"
)

// Sentinel errors, wrapped with details by the engines.
var (
	// ErrSuspended: the engine's object is suspended, so nothing pushed would be applied.
	// deliver refuses it like a policy (exit 8) before it pushes.
	ErrSuspended = errors.New("suspended")
	// ErrNotFound: the engine's object does not exist, or the cluster does not serve its kind
	// (the engine is not installed).
	ErrNotFound = errors.New("engine object not found")
	// ErrUnsupported: the engine's object is set up in a way deliver cannot follow (a source
	// kind other than a git repository, a source that does not follow a branch).
	ErrUnsupported = errors.New("unsupported engine setup")
	// ErrFailed: the engine tried the revision and reported a failure. It also wraps
	// cluster.ErrRolloutFailed, as does a wait that runs out of time.
	ErrFailed = errors.New("the engine reported a failure")
)

// Engine hands a pushed commit to a GitOps engine and waits for it.
type Engine interface {
	// String names the engine and its object, e.g. "Flux Kustomization flux-system/staging".
	String() string
	// Check reads the engine's objects before anything is pushed: it returns their state, and
	// an error wrapping ErrSuspended, ErrNotFound or ErrUnsupported when deliver must not go
	// on, or one of package cluster's sentinels when the cluster cannot be read.
	Check(ctx context.Context) (State, error)
	// Sync asks the engine to reconcile now and waits, within req.Timeout, until it has applied
	// req.Commit or a revision that contains it and the workloads carrying req.Images are
	// rolled out. A failure the engine reports ends the wait at once with an error wrapping
	// ErrFailed and cluster.ErrRolloutFailed; running out of time wraps
	// cluster.ErrRolloutFailed.
	Sync(ctx context.Context, req Request) (Result, error)
}

// Contains reports whether revision contains commit (both full hex commit hashes): whether
// commit is revision or one of its ancestors. configrepo.Repo.Contains answers it from the
// config repo's history.
type Contains func(ctx context.Context, revision, commit string) (bool, error)

// Request is what Sync waits for.
type Request struct {
	// Commit is the pushed commit, full hex.
	Commit string
	// Contains decides whether a revision the engine reports contains Commit; nil accepts
	// Commit itself only.
	Contains Contains
	// Images are the deployed images as the workloads run them (for example
	// "registry.example/team/web:1.4.3@sha256:..."). Sync waits for the workloads the engine
	// applied that run one of them; with none, for every workload it applied.
	Images []string
	// Reapply also asks the engine to apply its current revision again, correcting drift in
	// the cluster, and waits until it did (`deliver apply`); without it, a revision the engine
	// already applied counts as done.
	Reapply bool
	// Timeout bounds the whole Sync; 0 means 5 minutes.
	Timeout time.Duration
	// Progress receives progress lines; nil drops them.
	Progress func(line string)
}

// Result is what Sync saw.
type Result struct {
	// Revision is the commit the engine applied: Commit or a later one that contains it.
	Revision string
	// Workloads are the workloads Sync waited for (those running Images).
	Workloads []cluster.ObjectRef
	// Fetched is how long the engine took to fetch a revision containing Commit, from the
	// request; Applied, until it reported that revision applied and ready; RolledOut, until the
	// workloads were rolled out. Each counts from the start of Sync.
	Fetched, Applied, RolledOut time.Duration
}

// State is an engine object's state as last reported, for Check and `deliver diff`.
type State struct {
	// Object names the engine's object, e.g. "Kustomization/flux-system/staging".
	Object string
	// Source names the object the engine fetches from, e.g. "GitRepository/flux-system/config",
	// with the URL and branch it follows.
	Source, SourceURL, SourceBranch string
	// Path is the directory of the repo the engine builds, as the object names it.
	Path string
	// Suspended tells whether the object (or its source) is suspended, and by whom.
	Suspended   bool
	SuspendedBy string
	// Ready is the object's Ready condition: "True", "False" or "Unknown" ("" if it has none),
	// with its reason and message.
	Ready, Reason, Message string
	// Fetched is the commit the source last fetched; Attempted the one the engine last tried
	// to apply; Applied the one it last applied successfully (each "" if unknown).
	Fetched, Attempted, Applied string
}

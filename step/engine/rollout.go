package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/deliverhq/deliver/step/cluster"
)

// workloadKinds are the kinds whose rollout WaitRollout follows, with the path of their pod
// spec.
var workloadKinds = map[schema.GroupKind][]string{
	{Group: "apps", Kind: "Deployment"}:  {"spec", "template", "spec"},
	{Group: "apps", Kind: "StatefulSet"}: {"spec", "template", "spec"},
	{Group: "apps", Kind: "DaemonSet"}:   {"spec", "template", "spec"},
	{Group: "apps", Kind: "ReplicaSet"}:  {"spec", "template", "spec"},
	{Group: "batch", Kind: "Job"}:        {"spec", "template", "spec"},
	{Kind: "Pod"}:                        {"spec"},
}

// readWorkers bounds the concurrent reads of WaitRollout.
const readWorkers = 8

// WaitRollout waits until the workloads among objs (the objects an engine applied) that run
// one of images are rolled out, with cluster.Wait (kstatus): the same progress lines as the
// direct apply. With no images it waits for every workload among objs. It returns the
// workloads it waited for; none running the images is not an error (a later push may have
// replaced them). Errors are cluster.Wait's: a rollout that fails or runs out of time wraps
// cluster.ErrRolloutFailed.
func WaitRollout(ctx context.Context, c *cluster.Client, objs []cluster.ObjectRef, images []string, timeout time.Duration, progress func(string)) ([]cluster.ObjectRef, error) {
	var candidates []cluster.ObjectRef
	for _, ref := range objs {
		if _, ok := workloadKinds[ref.GroupKind()]; ok {
			candidates = append(candidates, ref)
		}
	}
	read := make([]*unstructured.Unstructured, len(candidates))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readWorkers)
	for i, ref := range candidates {
		g.Go(func() error {
			u, err := c.Get(gctx, ref)
			if errors.Is(err, cluster.ErrNotFound) {
				return nil // waited for below when no images are given; kstatus reports it
			}
			read[i] = u
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var refs []cluster.ObjectRef
	var seen []*unstructured.Unstructured
	for i, ref := range candidates {
		u := read[i]
		if len(images) > 0 && (u == nil || !runsAny(u, workloadKinds[ref.GroupKind()], images)) {
			continue
		}
		refs = append(refs, ref)
		if u != nil {
			seen = append(seen, u)
		}
	}
	if len(refs) == 0 {
		return nil, nil
	}
	err := c.Wait(ctx, refs, cluster.WaitOptions{Timeout: timeout, Seen: seen, Progress: progress})
	return refs, err
}

// runsAny reports whether the pod spec of u at path has a container (or init container)
// running one of images.
func runsAny(u *unstructured.Unstructured, path []string, images []string) bool {
	for _, field := range []string{"initContainers", "containers"} {
		containers, _, _ := unstructured.NestedSlice(u.Object, append(append([]string{}, path...), field)...)
		for _, c := range containers {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			running, _ := m["image"].(string)
			for _, img := range images {
				if SameImage(running, img) {
					return true
				}
			}
		}
	}
	return false
}

// SameImage reports whether two image references name the same image: they are equal, or they
// have the same repository and the same digest (the tag may be left out of one of them).
func SameImage(a, b string) bool {
	if a == b {
		return true
	}
	repoA, digestA := splitImage(a)
	repoB, digestB := splitImage(b)
	return digestA != "" && digestA == digestB && repoA == repoB
}

// splitImage splits an image reference into its repository (without tag) and digest.
func splitImage(ref string) (repo, digest string) {
	repo, digest, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo, digest
}

// ShortCommit is the first 12 characters of a commit hash, as deliver prints commits.
func ShortCommit(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Elapsed formats a duration for progress lines: "0.42s", "6.1s", "1m12s".
func Elapsed(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

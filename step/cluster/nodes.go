package cluster

import (
	"context"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Platform is an operating system and CPU architecture that nodes run, as their kubelets report
// them (status.nodeInfo.operatingSystem and .architecture).
type Platform struct {
	OS, Architecture string
}

// String returns "os/architecture", e.g. "linux/arm64", the form image indexes use.
func (p Platform) String() string { return p.OS + "/" + p.Architecture }

var nodesGVR = schema.GroupVersionResource{Version: "v1", Resource: "nodes"}

// nodesPageSize bounds one page of the node list: a big cluster's nodes are read a page at a
// time, and a node's status (its list of cached images) can run to tens of KB.
const nodesPageSize = 100

// NodePlatforms returns the platforms the cluster's nodes run, the most common first (ties in
// name order). It returns nothing, and no error, when the platforms are unknown: the cluster
// has no nodes that report one, or the credentials may not list nodes (403), as a deployer
// confined to its namespaces often may not. Other errors wrap ErrUnreachable, ErrUnauthorized
// or ErrApply, like the apply's.
func (c *Client) NodePlatforms(ctx context.Context) ([]Platform, error) {
	ctx = quiet(ctx)
	count := map[Platform]int{}
	opts := metav1.ListOptions{Limit: nodesPageSize}
	for {
		list, err := c.dynamic.Resource(nodesGVR).List(ctx, opts)
		if apierrors.IsForbidden(err) {
			return nil, nil
		}
		if err != nil {
			return nil, classify(ctx, "listing the nodes of "+c.config.Host, err)
		}
		for _, n := range list.Items {
			os, _, _ := unstructured.NestedString(n.Object, "status", "nodeInfo", "operatingSystem")
			arch, _, _ := unstructured.NestedString(n.Object, "status", "nodeInfo", "architecture")
			if os != "" && arch != "" {
				count[Platform{OS: os, Architecture: arch}]++
			}
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			break
		}
	}
	out := make([]Platform, 0, len(count))
	for p := range count {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if count[out[i]] != count[out[j]] {
			return count[out[i]] > count[out[j]]
		}
		return out[i].String() < out[j].String()
	})
	return out, nil
}

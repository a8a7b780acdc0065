package cluster

import (
	"context"
	"fmt"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Diff reports how applying objs with opts would change the cluster: a
// server-side dry run of every object (opts.DryRun is implied) compared with
// the live object. It returns only the objects that would be created or
// changed and, with opts.Prune, those that would be pruned, in apply order.
// Nothing changes in the cluster. Errors are those of Apply.
func (c *Client) Diff(ctx context.Context, objs []*unstructured.Unstructured, opts ApplyOptions) ([]ObjectDiff, error) {
	ctx = quiet(ctx)
	opts.DryRun = true
	p, err := c.plan(ctx, objs, opts)
	if err != nil {
		return nil, err
	}
	outs, pruned, err := c.execute(ctx, p)
	if err != nil {
		return nil, err
	}
	var diffs []ObjectDiff
	for _, o := range append(outs, pruned...) {
		if o.action == ActionUnchanged {
			continue
		}
		var after *unstructured.Unstructured
		if o.action != ActionPruned {
			after = o.result
		}
		d, err := unifiedDiff(o.ref, o.live, after)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, ObjectDiff{Ref: o.ref, Action: o.action, Diff: d})
	}
	return diffs, nil
}

// unifiedDiff returns the unified diff of the YAML of before and after (nil
// meaning absent), without the volatile fields stripVolatile removes.
func unifiedDiff(ref ObjectRef, before, after *unstructured.Unstructured) (string, error) {
	text := func(u *unstructured.Unstructured) (string, error) {
		if u == nil {
			return "", nil
		}
		b, err := yaml.Marshal(stripVolatile(u))
		if err != nil {
			return "", fmt.Errorf("encoding %s as YAML: %w", ref, err)
		}
		return string(b), nil
	}
	a, err := text(before)
	if err != nil {
		return "", err
	}
	b, err := text(after)
	if err != nil {
		return "", err
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        difflib.SplitLines(a),
		B:        difflib.SplitLines(b),
		FromFile: "live/" + ref.String(),
		ToFile:   "applied/" + ref.String(),
		Context:  3,
	})
}

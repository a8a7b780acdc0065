// downgrade.go owns wiring the policy's downgrade guard to the registry and the cluster.

package step

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/policy"
	"github.com/deliverhq/deliver/step/registry"
)

// newDowngradeGuard returns the policy's downgrade guard for one change. It reads creation
// times from the registry; of a multi-platform image it reads the image of the platform the
// cluster's nodes run (ap, when deliver applies and may list the nodes), else the index's first,
// and logs which.
func (r *runner) newDowngradeGuard(reg *registry.Client, ap *applier) *policy.DowngradeGuard {
	var once sync.Once
	var platforms []string
	clusterPlatforms := func(ctx context.Context) []string {
		once.Do(func() {
			if ap == nil {
				return
			}
			ps, err := ap.client.NodePlatforms(ctx)
			if err != nil {
				r.rep.Warnf("the platforms of the cluster's nodes are unknown: %v", err)
				return
			}
			for _, p := range ps {
				platforms = append(platforms, p.String())
			}
		})
		return platforms
	}
	return policy.NewDowngradeGuard(func(ctx context.Context, ref string) (time.Time, error) {
		prefer := clusterPlatforms(ctx)
		c, err := reg.Created(ctx, ref, prefer)
		if err != nil {
			return time.Time{}, err
		}
		if c.Platform != "" {
			why := "the cluster's platforms are unknown"
			switch {
			case c.Preferred:
				why = "a platform the cluster runs"
			case len(prefer) > 0:
				why = "it holds none of the cluster's platforms, " + strings.Join(prefer, ", ")
			}
			r.rep.Logf("downgrade guard: %s is a multi-platform image; read the creation time of its %s image (%s)", ref, c.Platform, why)
		}
		return c.Time, nil
	}, r.rep.Logf)
}

// checkDowngrade runs the downgrade guard on the images the overlay in dir sets now and the
// ones the change sets.
func checkDowngrade(ctx context.Context, guard *policy.DowngradeGuard, root, overlay string, images []types.Image) error {
	current, err := kustomize.ReadOverlayImages(root, overlay)
	if err != nil {
		return err
	}
	err = guard.Check(ctx, guardImages(current), guardImages(images))
	if errors.Is(err, policy.ErrDowngrade) {
		return fmt.Errorf("%w: %w", errPolicy, err)
	}
	return err
}

// guardImages turns overrides into the guard's images.
func guardImages(images []types.Image) []policy.Image {
	out := make([]policy.Image, 0, len(images))
	for _, img := range images {
		g := policy.Image{Name: img.Name, Tag: img.NewTag}
		if img.NewTag != "" || img.Digest != "" {
			g.Ref = kustomize.FormatImage(img)
		}
		out = append(out, g)
	}
	return out
}

package step

import (
	"fmt"
	"testing"

	"github.com/deliverhq/deliver/step/cluster"
	"github.com/deliverhq/deliver/step/engine"
)

// TestExitCodeEngine: the hand-off's errors get their documented exit codes, also wrapped as
// the engines wrap them.
func TestExitCodeEngine(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("%w: Kustomization/flux-system/staging is suspended", engine.ErrSuspended), ExitPolicy},
		{fmt.Errorf("%w: Kustomization/flux-system/nope does not exist: %w", engine.ErrNotFound, cluster.ErrNotFound), ExitUsage},
		{fmt.Errorf("%w: no Flux: %w", engine.ErrNotFound, cluster.ErrInvalid), ExitUsage},
		{fmt.Errorf("%w: builds from an OCIRepository", engine.ErrUnsupported), ExitUsage},
		{fmt.Errorf("%w: GitRepository/flux-system/config did not fetch", engine.ErrNotFetched), ExitApply},
		{fmt.Errorf("%w: %w: HealthCheckFailed", engine.ErrFailed, cluster.ErrRolloutFailed), ExitRollout},
		{fmt.Errorf("waiting: %w", cluster.ErrRolloutFailed), ExitRollout},
	} {
		if got := ExitCode(fmt.Errorf("deploy: %w", tt.err)); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

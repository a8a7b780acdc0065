package step_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/step"
)

// TestMainInterruptedBeforeStart: a run whose context is already cancelled when Main starts (a
// signal during the process's start-up) does nothing and exits 130, whatever the command,
// even one that would succeed at once.
func TestMainInterruptedBeforeStart(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"deliver", "version"},
		{"deliver", "deploy", "--env", "staging", "--image", "web=registry.invalid/web:1", "--config-repo", "https://git.invalid/config.git", "--no-apply"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var stdout, stderr bytes.Buffer
		code := step.Main(ctx, args, step.IO{Stdout: &stdout, Stderr: &stderr})
		if code != step.ExitInterrupted || stdout.Len() > 0 || !strings.Contains(stderr.String(), "interrupted before starting") {
			t.Errorf("%s: exit %d, want %d with nothing on stdout and the interruption on stderr\n--- stdout\n%s--- stderr\n%s",
				strings.Join(args[1:], " "), code, step.ExitInterrupted, &stdout, &stderr)
		}
	}
}

package interrupt

import (
	"context"
	"errors"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestSignalBeforeContext: a SIGTERM the process gets before Context is called (the package's
// init caught it; without that the test binary would die) cancels the context Context returns,
// at once, with a cause naming the signal.
// The tests are not parallel: the signals are the process's.
func TestSignalBeforeContext(t *testing.T) {
	signal.Notify(received, signals...) // as init left it (an earlier test's stop ended that)
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The signal reaches the channel through os/signal's own goroutine.
	deadline := time.Now().Add(10 * time.Second)
	for len(received) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ctx, stop := Context(context.Background())
	defer stop()
	if ctx.Err() == nil {
		t.Fatal("the context of a process that already got SIGTERM is not cancelled when Context returns")
	}
	if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) || cause.Error() != "terminated signal received" {
		t.Errorf("cause = %v, want \"terminated signal received\" (unwrapping to context.Canceled)", cause)
	}
}

// TestSignalAfterContext: SIGINT after Context cancels the context; until stop, the signal is
// caught (the process lives on).
func TestSignalAfterContext(t *testing.T) {
	ctx, stop := Context(context.Background())
	defer stop()
	if ctx.Err() != nil {
		t.Fatalf("cancelled without a signal: %v", context.Cause(ctx))
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGINT did not cancel the context")
	}
	if got := context.Cause(ctx).Error(); got != "interrupt signal received" {
		t.Errorf("cause = %q", got)
	}
}

// Package interrupt makes SIGINT and SIGTERM cancel deliver's run from the first moments of the
// process. Its init subscribes to both signals as soon as os/signal itself is initialised,
// before the other packages of the binary are (the Kubernetes and kustomize libraries take tens
// of milliseconds to register their types): a signal that arrives meanwhile is kept for the run,
// instead of ending the process with the runtime's default action (exit by SIGTERM, 143 in a
// shell). Only the Go runtime's own start-up, before any package is initialised, remains
// uncovered. main imports it first and calls Context once.
package interrupt

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// received gets the signals from the moment the package is initialised; it holds the first one
// until Context takes it. It is the process's signal subscription, so it lives as long as the
// process does: the one piece of package state, set up once in init.
var received = make(chan os.Signal, 1)

// signals are the signals that interrupt a run.
var signals = []os.Signal{os.Interrupt, syscall.SIGTERM}

func init() {
	signal.Notify(received, signals...)
}

// It imports nothing but os/signal's own dependencies (not even fmt), so nothing delays its init.

// Context returns a context cancelled by the first SIGINT or SIGTERM the process received,
// before the call (then the context is cancelled when Context returns) or after it; its cause
// names the signal. Signals keep being caught until stop, which restores their default action
// (a later Context catches them again). main calls it once.
func Context(parent context.Context) (ctx context.Context, stop func()) {
	signal.Notify(received, signals...) // already so since init, unless an earlier stop ended it
	ctx, cancel := context.WithCancelCause(parent)
	select {
	case sig := <-received:
		cancel(cause(sig))
		return ctx, func() { signal.Stop(received) }
	default:
	}
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-received:
			cancel(cause(sig))
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(received)
		close(done)
		cancel(context.Canceled)
	}
}

// cause is the cancellation cause for sig.
func cause(sig os.Signal) error { return signalError{sig} }

// signalError says which signal cancelled the run; it unwraps to context.Canceled.
type signalError struct{ sig os.Signal }

func (e signalError) Error() string { return e.sig.String() + " signal received" }
func (e signalError) Unwrap() error { return context.Canceled }

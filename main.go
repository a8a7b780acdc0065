// Command deliver ships a container image to Kubernetes through a GitOps config repo; see
// package step for the commands and README.md for their use.
package main

import (
	"context"
	"os"

	// Its init catches SIGINT and SIGTERM right after os/signal is initialised, before the
	// other packages of the binary are (see the package doc).
	"github.com/deliverhq/deliver/internal/gctune"
	"github.com/deliverhq/deliver/internal/interrupt"
	"github.com/deliverhq/deliver/step"
)

func main() {
	gctune.Set(os.Getenv)
	ctx, stop := interrupt.Context(context.Background())
	code := step.Main(ctx, os.Args, step.IO{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// Command deliver ships a container image to Kubernetes through a GitOps config repo; see
// package step for the commands and README.md for their use.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/deliverhq/deliver/step"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := step.Main(ctx, os.Args, step.IO{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}

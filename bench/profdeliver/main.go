// Command profdeliver is deliver with profiling: the same entry point as the repository's
// main.go (step.Main), writing a CPU profile to $DELIVER_BENCH_CPUPROFILE and, at exit, a heap
// profile to $DELIVER_BENCH_HEAPPROFILE when they are set. The benchmark harness runs it
// instead of bin/deliver with `go run ./bench --profile DIR`, to find where deliver spends its
// time; the product binary itself has no profiling hooks.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"github.com/deliverhq/deliver/step"
)

func main() {
	if path := os.Getenv("DELIVER_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profdeliver:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "profdeliver:", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := step.Main(ctx, os.Args, step.IO{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	pprof.StopCPUProfile()
	if path := os.Getenv("DELIVER_BENCH_HEAPPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			runtime.GC()
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			_ = f.Close()
		}
	}
	os.Exit(code)
}

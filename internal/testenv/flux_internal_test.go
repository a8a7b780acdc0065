package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeFakeFluxBins writes what FluxBinDir looks for into dir.
func writeFakeFluxBins(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "crds"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range fluxBinaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range fluxCRDs {
		if err := os.WriteFile(filepath.Join(dir, "crds", f), []byte("kind: CustomResourceDefinition\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// lockFluxBins takes the build lock of dir as hack/flux-bins.sh does, and returns its release.
func lockFluxBins(t *testing.T, dir string) func() {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, ".lock"))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { _ = f.Close() }
}

// TestWaitFluxBinDir: while a build holds the lock, StartFlux's lookup waits for it; the
// controllers it built are found, and a build that ended without them is reported with the end
// of its log. Without a build running, a missing controller is an error at once.
func TestWaitFluxBinDir(t *testing.T) {
	t.Run("build succeeds", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("DELIVER_FLUX_BINS", dir)
		writeFakeFluxBins(t, dir)
		last := filepath.Join(dir, fluxBinaries[len(fluxBinaries)-1])
		if err := os.Remove(last); err != nil {
			t.Fatal(err)
		}
		release := lockFluxBins(t, dir)
		go func() {
			time.Sleep(1500 * time.Millisecond)
			if err := os.WriteFile(last, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Error(err)
			}
			release()
		}()
		start := time.Now()
		got, err := waitFluxBinDir(context.Background())
		if err != nil || got != dir {
			t.Fatalf("waitFluxBinDir = %q, %v; want %q", got, err, dir)
		}
		if took := time.Since(start); took < time.Second {
			t.Errorf("returned after %s, before the build released its lock", took)
		}
	})
	t.Run("build fails", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("DELIVER_FLUX_BINS", dir)
		release := lockFluxBins(t, dir)
		if err := os.WriteFile(filepath.Join(dir, "build.log"), []byte("go: downloading\nverifying module: checksum mismatch\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		go func() { time.Sleep(500 * time.Millisecond); release() }()
		_, err := waitFluxBinDir(context.Background())
		if err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "make flux-bins") {
			t.Fatalf("waitFluxBinDir = %v; want the missing controllers and the end of the build log", err)
		}
	})
	t.Run("no build", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("DELIVER_FLUX_BINS", dir)
		start := time.Now()
		if _, err := waitFluxBinDir(context.Background()); err == nil || time.Since(start) > time.Second {
			t.Fatalf("waitFluxBinDir = %v after %s; want an error at once", err, time.Since(start))
		}
	})
	t.Run("interrupted", func(t *testing.T) {
		dir := t.TempDir()
		t.Setenv("DELIVER_FLUX_BINS", dir)
		defer lockFluxBins(t, dir)()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if _, err := waitFluxBinDir(ctx); err == nil || !strings.Contains(err.Error(), "while waiting for the build") {
			t.Fatalf("waitFluxBinDir = %v; want it to give up with ctx", err)
		}
	})
}

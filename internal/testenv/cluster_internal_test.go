package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBins writes shell scripts named like the Kubernetes binaries into a
// temp dir; etcd prints script and fails.
func fakeBins(t *testing.T, etcd string) string {
	t.Helper()
	dir := t.TempDir()
	for _, b := range k8sBinaries {
		script := "#!/bin/sh\nsleep 60\n"
		if b == "etcd" {
			script = "#!/bin/sh\n" + etcd
		}
		if err := os.WriteFile(filepath.Join(dir, b), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBinDirReportsMissingBinaries(t *testing.T) {
	dir := fakeBins(t, "exit 1\n")
	if err := os.Remove(filepath.Join(dir, "kwok")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "kubectl"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DELIVER_K8S_BINS", dir)
	got, err := BinDir()
	if got != dir || err == nil {
		t.Fatalf("BinDir() = %q, %v; want %q and an error", got, err, dir)
	}
	for _, want := range []string{dir, "kubectl, kwok", "make k8s-bins"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestStartClusterReportsEarlyExit(t *testing.T) {
	t.Setenv("DELIVER_K8S_BINS", fakeBins(t, "echo 'etcdmain: fatal: disk on fire' >&2\nexit 3\n"))
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "deliver-k8s-*"))
	c, err := StartCluster(context.Background())
	if err == nil {
		_ = c.Stop()
		t.Fatal("StartCluster succeeded with a failing etcd")
	}
	for _, want := range []string{"etcd exited early", "exit status 3", "disk on fire"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "deliver-k8s-*"))
	if len(after) > len(before) {
		t.Errorf("temp dirs left behind: before %v, after %v", before, after)
	}
}

func TestStartClusterRetriesPortClash(t *testing.T) {
	count := filepath.Join(t.TempDir(), "count")
	t.Setenv("DELIVER_K8S_BINS", fakeBins(t, "echo x >> "+count+"\necho 'listen tcp 127.0.0.1:1: bind: address already in use' >&2\nexit 1\n"))
	c, err := StartCluster(context.Background())
	if err == nil {
		_ = c.Stop()
		t.Fatal("StartCluster succeeded with a failing etcd")
	}
	b, _ := os.ReadFile(count)
	if n := strings.Count(string(b), "x"); n != 3 {
		t.Errorf("etcd started %d times, want 3 (two retries on a port clash)", n)
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not mention the port clash", err)
	}
}

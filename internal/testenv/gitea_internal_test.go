package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// skipRecorder is a testing.TB that records Skipf instead of ending the test.
type skipRecorder struct {
	testing.TB
	skipped string
}

func (r *skipRecorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }

func TestGiteaMissingBinary(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DELIVER_GITEA_BINS", dir)

	bin, err := GiteaBinary()
	if err == nil || bin != dir+"/gitea" || !strings.Contains(err.Error(), "make gitea-bins") {
		t.Fatalf("GiteaBinary() = %q, %v; want %s/gitea and an error saying to run make gitea-bins", bin, err, dir)
	}
	if _, err := StartGitea(context.Background()); err == nil || !strings.Contains(err.Error(), "make gitea-bins") {
		t.Fatalf("StartGitea without the binary: %v; want the same error", err)
	}

	// Only an explicit DELIVER_SKIP_GITEA=1 turns the failure into a skip.
	for _, tc := range []struct {
		env      string
		wantSkip bool
	}{{"", false}, {"0", false}, {"true", false}, {"1", true}} {
		t.Setenv("DELIVER_SKIP_GITEA", tc.env)
		rec := &skipRecorder{TB: t}
		skipIfGiteaMissing(rec)
		if got := rec.skipped != ""; got != tc.wantSkip {
			t.Errorf("DELIVER_SKIP_GITEA=%q: skipped = %q, want skip %v", tc.env, rec.skipped, tc.wantSkip)
		}
		if tc.wantSkip && (!strings.Contains(rec.skipped, "make gitea-bins") || !strings.Contains(rec.skipped, "DELIVER_SKIP_GITEA=1")) {
			t.Errorf("skip message %q does not say how to build Gitea and why it skipped", rec.skipped)
		}
	}

	// With the binary present, nothing is skipped whatever the variable says.
	if err := os.WriteFile(dir+"/gitea", []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &skipRecorder{TB: t}
	skipIfGiteaMissing(rec)
	if rec.skipped != "" {
		t.Errorf("skipped with the binary present: %q", rec.skipped)
	}
}

// TestGiteaRetriesATakenPort holds the first port Gitea is given, as another process would
// between the choice and the bind: Gitea logs the bind error (and does not exit), and
// StartGitea must notice and come up on another port.
func TestGiteaRetriesATakenPort(t *testing.T) {
	if _, err := GiteaBinary(); err != nil {
		skipIfGiteaMissing(t)
		t.Fatal(err)
	}
	taken, err := giteaPort()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(taken))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var picked []int
	pick := func() (int, error) {
		if len(picked) == 0 {
			picked = append(picked, taken)
			return taken, nil
		}
		p, err := giteaPort()
		picked = append(picked, p)
		return p, err
	}
	g, err := StartGitea(context.Background(), func(o *giteaOptions) { o.pickPort = pick })
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	if len(picked) != 2 || strings.HasSuffix(g.URL, ":"+strconv.Itoa(taken)) {
		t.Fatalf("ports tried = %v, URL = %s; want a second port after %d", picked, g.URL, taken)
	}
	if !strings.Contains(g.LogTail(500), strconv.Itoa(taken)+": bind: address already in use") {
		t.Errorf("Gitea's log does not show the failed bind on %d:\n%s", taken, g.LogTail(30))
	}
	var v struct {
		Version string `json:"version"`
	}
	if err := g.Do(context.Background(), "GET", "/version", nil, &v); err != nil || v.Version != GiteaVersion {
		t.Fatalf("version = %q, %v; want %s", v.Version, err, GiteaVersion)
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
)

// buildDeliver builds the deliver binary of this checkout into a temp dir, as CI builds it.
func buildDeliver(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "deliver")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building deliver: %v\n%s", err, out)
	}
	return bin
}

// TestSmoke runs every scenario (and the stress test) at tiny sizes against real servers, so
// the harness cannot rot: `make test` runs it (`make bench-smoke` runs it alone). It checks
// correctness facts, never timings: every deliver update landed, none was lost, the history
// stayed linear and every commit renders, the baseline script ran, the 40-object overlay is
// in the cluster, and the report renders.
func TestSmoke(t *testing.T) {
	tools, err := findTools(buildDeliver(t), "", "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	env, err := StartEnv(ctx, tools, 0, true, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	rep := &Report{Started: time.Now(), Machine: machine(), Versions: versions(ctx, tools), Sizes: SmokeSizes}
	all := map[string]bool{"p1": true, "p2": true, "p3": true, "p4": true, "p5": true, "p6": true, "stress": true}
	if err := RunScenarios(ctx, env, rep, all, filepath.Join(t.TempDir(), "no-image")); err != nil {
		t.Fatal(err)
	}

	// Scenarios fail with an error when a single deploy does not land or the cluster does not
	// hold the overlay's objects; what is left to check is counted here.
	if len(rep.P1.Deliver) != SmokeSizes.P1Runs || len(rep.P1.Script) != SmokeSizes.P1Runs {
		t.Errorf("P1: %d deliver and %d script runs, want %d each", len(rep.P1.Deliver), len(rep.P1.Script), SmokeSizes.P1Runs)
	}
	for _, r := range rep.P1.Deliver {
		for _, phase := range []string{"verify", "clone", "push", "apply", "wait"} {
			if _, ok := r.Phases[phase]; !ok {
				t.Errorf("P1: deliver's stderr has no %q phase duration:\n%s", phase, r.Stderr)
			}
		}
	}
	for _, r := range rep.P1.Script {
		for _, phase := range []string{"clone", "edit", "commit", "push", "apply", "wait"} {
			if _, ok := r.Phases[phase]; !ok {
				t.Errorf("P1: the script's stderr has no %q phase duration:\n%s", phase, r.Stderr)
			}
		}
	}
	for _, row := range rep.P2.Rows {
		t.Logf("P2 %s N=%d: %d landed, %d failed, %d lost", row.Tool, row.N, row.Landed, row.Failed, row.Lost)
		if row.Tool == "deliver" && (row.Landed != row.N*row.Trials || row.Failed != 0 || row.Lost != 0) {
			t.Errorf("P2 deliver N=%d: %d/%d landed, %d failed, %d lost; want all landed, none lost", row.N, row.Landed, row.N*row.Trials, row.Failed, row.Lost)
		}
	}
	if rep.P2.Round <= 0 {
		t.Errorf("P2: no serial round measured")
	}
	if len(rep.P3.DeliverBig) != SmokeSizes.P3Runs || len(rep.P3.DeliverSmall) != SmokeSizes.P3Runs {
		t.Errorf("P3: %d/%d runs", len(rep.P3.DeliverBig), len(rep.P3.DeliverSmall))
	}
	if rep.P4.Objects != SmokeSizes.P4Objects {
		t.Errorf("P4: the fixture renders %d objects, want %d", rep.P4.Objects, SmokeSizes.P4Objects)
	}
	if rep.P4.DeliverCreate.MaxRSS <= 0 {
		t.Errorf("P4: no peak RSS measured for deliver")
	}
	if rep.P4.DeliverRequests["APPLY"] == 0 && rep.P4.DeliverRequests["PATCH"] == 0 {
		t.Errorf("P4: the API server counted no apply requests from deliver: %v", rep.P4.DeliverRequests)
	}
	if len(rep.P5.Version) != SmokeSizes.P5Runs || rep.P5.Image != nil || rep.P5.ImageNotMeasured == "" {
		t.Errorf("P5: %d version runs, image %v (%q)", len(rep.P5.Version), rep.P5.Image, rep.P5.ImageNotMeasured)
	}
	for _, row := range rep.P6.Rows {
		if len(row.Runs) != SmokeSizes.P6Runs {
			t.Errorf("P6 %s: %d runs, want %d", row.Name, len(row.Runs), SmokeSizes.P6Runs)
		}
		for _, r := range row.Runs {
			if pushToReady(r, row.Flux) <= 0 {
				t.Errorf("P6 %s: no push-to-ready time in deliver's stderr:\n%s", row.Name, r.Stderr)
			}
			if _, applied, _, ok := fluxTimes(r); row.Flux && (!ok || applied <= 0) {
				t.Errorf("P6 %s: deliver's stderr does not say when Flux applied the commit:\n%s", row.Name, r.Stderr)
			}
		}
	}
	st := rep.Stress
	if st.Landed != st.Deploys || st.Failed != 0 || st.Lost != 0 || st.NonLinear != 0 || st.NotRendering != 0 ||
		st.CommitsChecked != st.Trials*(st.N+1) {
		t.Errorf("stress: %+v", *st)
	}
	md := rep.Markdown()
	for _, want := range []string{"#### P1", "#### P2", "#### P3", "#### P4", "#### P5", "#### P6", "#### Stress", "#### Targets"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report has no %q section:\n%s", want, md)
		}
	}
	t.Logf("report:\n%s", md)
}

func TestWriteSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := os.WriteFile(path, []byte("# Benchmarks\n\nanalysis\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, "results", "Results", "one\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, "stress", "Stress", "s1\n"); err != nil {
		t.Fatal(err)
	}
	if err := writeSection(path, "results", "Results", "two\n"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	s := string(data)
	if strings.Contains(s, "one") || !strings.Contains(s, "two") || !strings.Contains(s, "s1") || !strings.HasPrefix(s, "# Benchmarks\n\nanalysis\n") ||
		strings.Count(s, "### Results") != 1 {
		t.Errorf("after three writes:\n%s", s)
	}
}

func TestParsePhases(t *testing.T) {
	stderr := "==> verify: checking 1 image(s)\n    verify done in 8ms\n    web: a -> b\n    clone done in 1.2s\n" +
		"bench-phase edit 1500\nbench-attempt-failed 1\n    push failed after 3s\n"
	got := parsePhases(stderr)
	want := map[string]time.Duration{"verify": 8 * time.Millisecond, "clone": 1200 * time.Millisecond, "edit": 1500 * time.Microsecond}
	if len(got) != len(want) {
		t.Fatalf("phases %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %s, want %s", k, got[k], v)
		}
	}
}

// writeFixture writes f into a new temp dir and returns it.
func writeFixture(tb testing.TB, f Fixture) string {
	tb.Helper()
	root := tb.TempDir()
	for p, content := range f.Files() {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}

// BenchmarkBuild renders the benchmark's overlays in process with deliver's kustomize.Build,
// with and without their images: list, to show what the render check costs and why
// (go test -run XXX -bench Build -cpuprofile cpu.out ./bench):
//
//	services=20/images   services=20/no-images   services=500/images ...
func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{20, 32, 100, 500} {
		for _, withImages := range []bool{true, false} {
			name := fmt.Sprintf("services=%d/images", n)
			if !withImages {
				name = fmt.Sprintf("services=%d/no-images", n)
			}
			b.Run(name, func(b *testing.B) {
				f := Fixture{Services: services(n), Env: "bench", NS: "bench", Registry: "registry.example.com", Tag: "1.0.0"}
				root := writeFixture(b, f)
				if !withImages {
					noImages(b, filepath.Join(root, "overlays", "bench", "kustomization.yaml"))
				}
				for b.Loop() {
					if _, err := kustomize.Build(root, "overlays/bench"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	// P4's overlay: 1 000 objects, 20 of them Deployments with an image.
	for _, withImages := range []bool{true, false} {
		name := "p4-1000-objects/images"
		if !withImages {
			name = "p4-1000-objects/no-images"
		}
		b.Run(name, func(b *testing.B) {
			root := writeFixture(b, p4Fixture("bench", "registry.example.com", 1000))
			if !withImages {
				noImages(b, filepath.Join(root, "overlays", "bench", "kustomization.yaml"))
			}
			for b.Loop() {
				if _, err := kustomize.Build(root, "overlays/bench"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// noImages cuts the file at path before its images: key (the fixtures put it last).
func noImages(tb testing.TB, path string) {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	cut := strings.Index(string(data), "images:")
	if cut < 0 {
		tb.Fatalf("%s has no images:", path)
	}
	if err := os.WriteFile(path, data[:cut], 0o644); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkBuilderReplay renders an overlay of 64 services again and again with
// kustomize.Builder, one image entry changed before each build, as a run landing a queue of
// 64 changes does (go test -run XXX -bench BuilderReplay -cpuprofile cpu.out ./bench).
func BenchmarkBuilderReplay(b *testing.B) {
	f := Fixture{Services: services(64), Env: "bench", NS: "bench", Registry: "registry.example.com", Tag: "1.0.0"}
	root := writeFixture(b, f)
	dir := filepath.Join(root, "overlays", "bench")
	var builder kustomize.Builder
	if _, err := builder.Build(root, "overlays/bench"); err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		svc := f.Services[i%len(f.Services)]
		img := types.Image{Name: svc, NewName: f.Registry + "/" + f.ImageRepo(svc), NewTag: fmt.Sprintf("2.0.%d", i)}
		if _, err := kustomize.SetImages(dir, []types.Image{img}); err != nil {
			b.Fatal(err)
		}
		if _, err := builder.Build(root, "overlays/bench"); err != nil {
			b.Fatal(err)
		}
	}
}

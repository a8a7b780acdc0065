// Command bench measures deliver against the deploy recipe most teams script by hand (git
// clone, kustomize edit set image, git commit, git pull --rebase && git push retried 5 times,
// kubectl apply --server-side -k, kubectl rollout status; see baseline.sh), both run as CI
// would run them, as separate processes, against the same real servers: a git smart-HTTP
// server, an OCI registry and a Kubernetes control plane from internal/testenv.
//
// Scenarios (issue 7): P1 single deploy, P2 contention, P3 history growth, P4 apply scale,
// P5 image size and start time; (issue 17) P6 push to ready through Flux against the direct
// apply; --stress runs the contention test at 32 pipelines × 20
// trials and checks that no update is lost, the history stays linear and every commit
// renders. The report is Markdown on stdout; --write FILE also puts it into FILE between
// markers named after the run (results, results-latency-20ms, stress), keeping the rest of
// the file.
//
// `make bench` builds what it needs and runs it; `make stress`; `make bench-smoke` (or
// `go test ./bench`) runs every scenario at tiny sizes and checks correctness, not timings.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
)

func main() {
	var o options
	flag.StringVar(&o.deliver, "deliver", "bin/deliver", "the deliver binary to measure")
	flag.StringVar(&o.kubectl, "kubectl", "", "kubectl for the baseline (default: the k8s bin dir's, see `make k8s-bins`)")
	flag.StringVar(&o.kustomize, "kustomize", "", "kustomize CLI for the baseline (default: $DELIVER_BENCH_BINS/kustomize, see `make bench-bins`)")
	flag.DurationVar(&o.latency, "latency", 0, "delay added to every request to the git server and the registry (e.g. 20ms, a remote forge)")
	flag.StringVar(&o.only, "only", defaultOnly, "scenarios to run, comma-separated")
	flag.BoolVar(&o.stress, "stress", false, "run only the stress test: contention at 32 pipelines × 20 trials")
	flag.BoolVar(&o.smoke, "smoke", false, "tiny sizes: seconds, for checking the harness")
	flag.StringVar(&o.set, "set", "", "override sizes, e.g. P3Commits=1000,P3Runs=1,P2N=1+8 (field names of Sizes; lists joined with +)")
	flag.StringVar(&o.write, "write", "", "also write the report into this Markdown file (e.g. BENCHMARKS.md), replacing the run's section")
	flag.StringVar(&o.profile, "profile", "", "build deliver with profiling (bench/profdeliver) and write a CPU profile and the stderr of every deliver run into this directory")
	flag.Float64Var(&o.quiet, "quiet", 0.3, "before each scenario, wait until the CPUs are less than this busy (0: do not wait)")
	flag.DurationVar(&o.quietWait, "quiet-wait", 5*time.Minute, "the longest wait for a quiet machine before each scenario")
	flag.StringVar(&o.imageDir, "image-dir", "bin/image", "OCI layout of the container image (from `make image`) to measure")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// defaultOnly is every scenario but the stress test.
const defaultOnly = "p1,p2,p3,p4,p5,p6"

type options struct {
	deliver, kubectl, kustomize string
	latency                     time.Duration
	only                        string
	stress, smoke               bool
	write, imageDir, profile    string
	set                         string
	quiet                       float64
	quietWait                   time.Duration
}

// setSizes applies "Field=value,..." to s: int fields, and []int fields as values joined by "+".
func setSizes(s *Sizes, spec string) error {
	v := reflect.ValueOf(s).Elem()
	for _, kv := range strings.Split(spec, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, val, ok := strings.Cut(kv, "=")
		f := v.FieldByName(strings.TrimSpace(k))
		if !ok || !f.IsValid() {
			return fmt.Errorf("--set %q: want Field=value with a field of Sizes", kv)
		}
		var ints []int
		for _, p := range strings.Split(val, "+") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return fmt.Errorf("--set %q: %w", kv, err)
			}
			ints = append(ints, n)
		}
		switch f.Kind() {
		case reflect.Int:
			f.SetInt(int64(ints[0]))
		case reflect.Slice:
			f.Set(reflect.ValueOf(ints))
		}
	}
	return nil
}

// findTools resolves the three programs, failing with the make target that builds a missing one.
func findTools(deliver, kubectl, kust string) (Tools, error) {
	var t Tools
	var err error
	if t.Deliver, err = filepath.Abs(deliver); err != nil {
		return t, err
	}
	if _, err := os.Stat(t.Deliver); err != nil {
		return t, fmt.Errorf("%s not found: run `make build` (or `make bench`)", deliver)
	}
	if kubectl == "" {
		bin, err := testenv.BinDir()
		if err != nil {
			return t, err
		}
		kubectl = filepath.Join(bin, "kubectl")
	}
	if kust == "" {
		dir := os.Getenv("DELIVER_BENCH_BINS")
		if dir == "" {
			cache, err := os.UserCacheDir()
			if err != nil {
				return t, err
			}
			dir = filepath.Join(cache, "deliver", "bench-bins")
		}
		kust = filepath.Join(dir, "kustomize")
	}
	if _, err := os.Stat(kust); err != nil {
		return t, fmt.Errorf("the kustomize CLI is missing (%s): run `make bench-bins`", kust)
	}
	t.Kubectl, t.Kustomize = kubectl, kust
	return t, nil
}

// versions describes the programs measured.
func versions(ctx context.Context, t Tools) string {
	out := func(name string, args ...string) string {
		b, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return "unknown"
		}
		return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	kc := strings.TrimPrefix(out(t.Kubectl, "version", "--client"), "Client Version: ")
	return fmt.Sprintf("deliver %s, kubectl %s, kustomize %s, %s", out(t.Deliver, "version"), kc, out(t.Kustomize, "version"), out("git", "--version"))
}

func run(ctx context.Context, o options) error {
	start := time.Now()
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
		o.deliver = filepath.Join(o.profile, "profdeliver")
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", o.deliver, "github.com/deliverhq/deliver/bench/profdeliver")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building the profiling copy of deliver: %w\n%s", err, out)
		}
	}
	tools, err := findTools(o.deliver, o.kubectl, o.kustomize)
	if err != nil {
		return err
	}
	sizes := DefaultSizes
	if o.smoke {
		sizes = SmokeSizes
	}
	if err := setSizes(&sizes, o.set); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, s := range strings.Split(o.only, ",") {
		want[strings.TrimSpace(strings.ToLower(s))] = true
	}
	if o.stress {
		want = map[string]bool{"stress": true}
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	rep := &Report{Started: start, Latency: o.latency, Machine: machine(), Versions: versions(ctx, tools), Sizes: sizes}
	logf("starting servers (latency %s)", o.latency)
	env, err := StartEnv(ctx, tools, o.latency, want["p1"] || want["p4"] || want["p6"], logf)
	if err != nil {
		return err
	}
	defer env.Close()
	if o.profile != "" {
		env.ProfileDir, _ = filepath.Abs(o.profile)
	}
	if o.quiet > 0 && !o.smoke {
		env.Quiet, env.QuietWait = o.quiet, o.quietWait
	}
	if err := RunScenarios(ctx, env, rep, want, o.imageDir); err != nil {
		return err
	}
	rep.Took = time.Since(start)
	md := rep.Markdown()
	fmt.Print(md)
	if o.write != "" {
		name, title := "results", "Results"
		switch {
		case o.stress:
			name, title = "stress", "Stress results (`make stress`)"
		case o.latency > 0:
			name, title = "results-latency-"+o.latency.String(), "Results with "+o.latency.String()+" latency (`make bench BENCH_FLAGS=--latency="+o.latency.String()+"`)"
		case o.only != defaultOnly:
			// A subset gets a section of its own, so that it does not replace the full run's.
			only := strings.ReplaceAll(o.only, " ", "")
			name, title = "results-"+strings.ReplaceAll(only, ",", "-"), "Results of "+strings.ToUpper(only)+" (`make bench BENCH_FLAGS=--only="+only+"`)"
		}
		if o.smoke {
			name += "-smoke"
		}
		if err := writeSection(o.write, name, title, md); err != nil {
			return err
		}
		logf("wrote section %q of %s", name, o.write)
	}
	logf("done in %s", time.Since(start).Round(time.Second))
	return nil
}

// RunScenarios runs the wanted scenarios in order, filling rep.
func RunScenarios(ctx context.Context, env *Env, rep *Report, want map[string]bool, imageDir string) error {
	im := &images{e: env}
	s := rep.Sizes
	steps := []struct {
		name string
		run  func() error
	}{
		// P5 first, while the machine is quiet.
		{"p5", func() (err error) { rep.P5, err = P5(ctx, env, s, imageDir); return err }},
		{"p1", func() (err error) { rep.P1, err = P1(ctx, env, im, s); return err }},
		{"p2", func() (err error) { rep.P2, err = P2(ctx, env, im, s); return err }},
		{"p3", func() (err error) { rep.P3, err = P3(ctx, env, im, s); return err }},
		{"p4", func() (err error) { rep.P4, err = P4(ctx, env, im, s); return err }},
		{"p6", func() (err error) { rep.P6, err = P6(ctx, env, im, s); return err }},
		{"stress", func() (err error) { rep.Stress, err = Stress(ctx, env, im, s.StressN, s.StressTrials); return err }},
	}
	for _, st := range steps {
		if !want[st.name] {
			continue
		}
		if env.Quiet > 0 {
			busy := env.WaitQuiet(ctx, env.Quiet, env.QuietWait)
			rep.Busy = append(rep.Busy, fmt.Sprintf("%s %.0f%%", strings.ToUpper(st.name[:1])+st.name[1:], 100*busy))
		}
		env.Log("%s", strings.ToUpper(st.name))
		if err := st.run(); err != nil {
			return fmt.Errorf("%s: %w", strings.ToUpper(st.name), err)
		}
	}
	return nil
}

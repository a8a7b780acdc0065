package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
)

// baselineScript is the deploy recipe most teams script by hand; see the file.
//
//go:embed baseline.sh
var baselineScript []byte

// rssSource is the program every measured process is started through, so that its peak RSS
// is its own (see rss/main.go).
//
//go:embed rss/main.go
var rssSource []byte

// Tools are the programs the benchmark runs.
type Tools struct {
	Deliver   string // the deliver binary, as CI runs it
	Kubectl   string // kubectl v1.37.2 from the k8s bin dir
	Kustomize string // the kustomize CLI from hack/benchtools
}

// Env holds the servers every scenario talks to, and a scratch directory.
type Env struct {
	Tools   Tools
	Git     *testenv.GitServer
	Reg     *testenv.Registry
	Cluster *testenv.Cluster // nil when no scenario needs one
	Latency time.Duration
	// ProfileDir, if set, receives a CPU profile of every deliver run (Tools.Deliver must then
	// be the profiling copy, bench/profdeliver).
	ProfileDir string
	// Quiet > 0 makes RunScenarios wait, before each scenario, until the CPUs are less than
	// Quiet busy, for at most QuietWait.
	Quiet     float64
	QuietWait time.Duration
	// Log receives progress lines (stderr for the program, t.Logf in the smoke test).
	Log func(format string, args ...any)

	dir        string // scratch: homes, the script, seeds
	scriptPath string // path of baseline.sh
	rssPath    string // the rss helper, built from rssSource
	mu         sync.Mutex
	seq        int
}

// StartEnv starts the git server and registry (with latency, if any) and, when withCluster is
// set, the control plane.
func StartEnv(ctx context.Context, tools Tools, latency time.Duration, withCluster bool, log func(string, ...any)) (*Env, error) {
	e := &Env{Tools: tools, Latency: latency, Log: log}
	var err error
	if e.dir, err = os.MkdirTemp("", "deliver-bench-"); err != nil {
		return nil, err
	}
	e.scriptPath = filepath.Join(e.dir, "baseline.sh")
	if err := os.WriteFile(e.scriptPath, baselineScript, 0o755); err != nil {
		e.Close()
		return nil, err
	}
	if e.rssPath, err = buildRSS(ctx, e.dir); err != nil {
		e.Close()
		return nil, err
	}
	if e.Git, err = testenv.StartGitServer(testenv.WithLatency(latency)); err != nil {
		e.Close()
		return nil, err
	}
	if e.Reg, err = testenv.StartRegistry(testenv.WithRegistryLatency(latency)); err != nil {
		e.Close()
		return nil, err
	}
	if withCluster {
		if e.Cluster, err = testenv.StartCluster(ctx); err != nil {
			e.Close()
			return nil, err
		}
		log("control plane ready in %s", e.Cluster.StartupTime.Round(100*time.Millisecond))
	}
	return e, nil
}

// buildRSS compiles the rss helper (standard library only, outside any module) into dir.
func buildRSS(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "rss-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), rssSource, 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "rss")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "main.go")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=on", "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the rss helper: %w\n%s", err, out)
	}
	return bin, nil
}

// Close stops every server and removes the scratch directory.
func (e *Env) Close() {
	if e.Cluster != nil {
		_ = e.Cluster.Stop()
	}
	if e.Reg != nil {
		e.Reg.Close()
	}
	if e.Git != nil {
		e.Git.Close()
	}
	_ = os.RemoveAll(e.dir)
}

// tempDir returns a new directory under the scratch directory.
func (e *Env) tempDir(prefix string) (string, error) {
	e.mu.Lock()
	e.seq++
	n := e.seq
	e.mu.Unlock()
	dir := filepath.Join(e.dir, fmt.Sprintf("%s-%d", prefix, n))
	return dir, os.MkdirAll(dir, 0o755)
}

// Run is one finished process: what it printed, how long it took, its peak RSS.
type Run struct {
	Wall   time.Duration
	Code   int
	Stdout string
	Stderr string
	MaxRSS int64         // bytes: the largest process of its tree (getrusage of the child)
	CPU    time.Duration // user + system time of the process and the children it waited for
	// Phases are the phase durations the process reported on stderr (deliver's
	// "    clone done in 41ms", the baseline's "bench-phase clone 41234").
	Phases map[string]time.Duration
}

// OK reports whether the process exited 0.
func (r Run) OK() bool { return r.Code == 0 }

func (r Run) String() string {
	return fmt.Sprintf("exit %d after %s\n--- stdout\n%s--- stderr\n%s", r.Code, r.Wall.Round(time.Millisecond), r.Stdout, r.Stderr)
}

// Attempts counts the push attempts a run reported losing (deliver: "lost the race";
// the baseline: "attempt N failed").
func (r Run) LostRaces() int {
	return strings.Count(r.Stderr, "lost the race") + strings.Count(r.Stderr, "bench-attempt-failed")
}

var (
	deliverPhaseRE = regexp.MustCompile(`(?m)^\s+([a-z+-]+) done in (\S+)$`)
	scriptPhaseRE  = regexp.MustCompile(`(?m)^bench-phase (\S+) (\d+)$`)
)

func parsePhases(stderr string) map[string]time.Duration {
	phases := map[string]time.Duration{}
	for _, m := range deliverPhaseRE.FindAllStringSubmatch(stderr, -1) {
		if d, err := time.ParseDuration(m[2]); err == nil {
			phases[m[1]] += d
		}
	}
	for _, m := range scriptPhaseRE.FindAllStringSubmatch(stderr, -1) {
		if us, err := strconv.ParseInt(m[2], 10, 64); err == nil {
			phases[m[1]] += time.Duration(us) * time.Microsecond
		}
	}
	return phases
}

// gate lets several prepared processes start at the same moment.
type gate chan struct{}

// run runs name with args in a clean environment (PATH, a fresh HOME, no CI variables) plus
// env, waiting for g to open first if g is not nil.
func (e *Env) run(ctx context.Context, g gate, env []string, name string, args ...string) (Run, error) {
	home, err := e.tempDir("home")
	if err != nil {
		return Run{}, err
	}
	defer os.RemoveAll(home)
	measure := filepath.Join(home, ".rss")
	cmd := exec.CommandContext(ctx, e.rssPath, append([]string{measure, name}, args...)...)
	cmd.Dir = home
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "DOCKER_CONFIG=" + home,
		"TMPDIR=" + home, "LC_ALL=C", "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1"}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if g != nil {
		<-g
	}
	start := time.Now()
	err = cmd.Run()
	r := Run{Wall: time.Since(start), Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("running %s: %w", filepath.Base(name), err)
	}
	if r.Code == 127 && strings.Contains(r.Stderr, "rss: ") {
		return r, fmt.Errorf("running %s: %s", filepath.Base(name), strings.TrimSpace(r.Stderr))
	}
	// The helper's own measurement: the command's wall time without the helper's start,
	// and its peak RSS.
	if data, err := os.ReadFile(measure); err == nil {
		var rss, wall, cpu int64
		if _, err := fmt.Sscan(string(data), &rss, &wall, &cpu); err == nil {
			r.MaxRSS, r.Wall, r.CPU = rss, time.Duration(wall), time.Duration(cpu)
		}
	}
	r.Phases = parsePhases(r.Stderr)
	return r, nil
}

// Target is one config repo on the git server and the environment to deploy to.
type Target struct {
	Repo    string // repository name on the git server
	URL     string // its clone URL, without credentials
	Env     string // environment (overlay overlays/<env>)
	NS      string // namespace of the overlay
	Apply   bool   // apply to the cluster and wait
	Timeout time.Duration
}

// Deploy is one image to set: the image name as the manifests use it and its reference.
type Deploy struct {
	Name string // e.g. svc-03
	Ref  string // e.g. 127.0.0.1:PORT/team/svc-03:1.4.0
}

// deliver runs `deliver deploy` for one image, as a CI job would.
func (e *Env) deliver(ctx context.Context, g gate, t Target, d Deploy, extra ...string) (Run, error) {
	args := []string{"deploy", "--config-repo", t.URL, "--git-username", e.Git.Username, "--git-token", e.Git.Password,
		"--env", t.Env, "--image", d.Name + "=" + d.Ref}
	if t.Apply {
		args = append(args, "--kubeconfig", e.Cluster.Kubeconfig, "--timeout", durationOr(t.Timeout, 5*time.Minute).String())
	} else {
		args = append(args, "--no-apply")
	}
	args = append(args, extra...)
	var env []string
	var logFile string
	if e.ProfileDir != "" {
		e.mu.Lock()
		e.seq++
		n := e.seq
		e.mu.Unlock()
		base := fmt.Sprintf("%s/deliver-%s-%04d", e.ProfileDir, t.Repo, n)
		env = append(env, "DELIVER_BENCH_CPUPROFILE="+base+".pprof")
		logFile = base + ".log"
	}
	r, err := e.run(ctx, g, env, e.Tools.Deliver, args...)
	if logFile != "" {
		// Beside its profile, what the run said (which phase, lost races, the queue).
		_ = os.WriteFile(logFile, []byte(r.Stderr), 0o644)
	}
	return r, err
}

// script runs the baseline script for one image.
func (e *Env) script(ctx context.Context, g gate, t Target, d Deploy, rollout string) (Run, error) {
	authURL := strings.Replace(t.URL, "http://", "http://"+e.Git.Username+":"+e.Git.Password+"@", 1)
	env := []string{
		"REPO_URL=" + authURL, "BRANCH=main", "OVERLAY=overlays/" + t.Env, "IMAGE=" + d.Name + "=" + d.Ref,
		"KUSTOMIZE=" + e.Tools.Kustomize, "KUBECTL=" + e.Tools.Kubectl, "APPLY=0",
	}
	if t.Apply {
		env = append(env, "APPLY=1", "KUBECONFIG="+e.Cluster.Kubeconfig, "NAMESPACE="+t.NS, "ROLLOUT="+rollout,
			"TIMEOUT="+durationOr(t.Timeout, 5*time.Minute).String())
	}
	return e.run(ctx, g, env, "bash", e.scriptPath)
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// stats of a sample of durations.
type stats struct {
	N                int
	Median, Min, Max time.Duration
}

func durStats(ds []time.Duration) stats {
	if len(ds) == 0 {
		return stats{}
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return stats{N: len(s), Median: med, Min: s[0], Max: s[len(s)-1]}
}

func median(ds []time.Duration) time.Duration { return durStats(ds).Median }

// ms formats a duration in milliseconds (or seconds above 10 s) for tables.
func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

// ratio formats a/b.
func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", float64(a)/float64(b))
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

// childrenCPU is the user + system time of every child process this process has waited for:
// the measured programs (through the rss helper) and the git server's `git http-backend`.
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuBusy returns the fraction of all CPUs that was busy (not idle or waiting for I/O) over
// window, from /proc/stat.
func cpuBusy(ctx context.Context, window time.Duration) (float64, error) {
	read := func() (busy, total uint64, err error) {
		data, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, err
		}
		line, _, _ := strings.Cut(string(data), "\n")
		fields := strings.Fields(line)
		if len(fields) < 6 || fields[0] != "cpu" {
			return 0, 0, fmt.Errorf("unexpected /proc/stat line %q", line)
		}
		for i, f := range fields[1:] {
			v, err := strconv.ParseUint(f, 10, 64)
			if err != nil {
				return 0, 0, err
			}
			total += v
			if i != 3 && i != 4 { // idle, iowait
				busy += v
			}
		}
		return busy, total, nil
	}
	b0, t0, err := read()
	if err != nil {
		return 0, err
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(window):
	}
	b1, t1, err := read()
	if err != nil || t1 == t0 {
		return 0, err
	}
	return float64(b1-b0) / float64(t1-t0), nil
}

// WaitQuiet waits until the machine's CPUs are less than threshold busy over 2 seconds (the
// machine is shared: a neighbour's build would skew the timings), for at most max, and
// returns the busy fraction it last saw.
func (e *Env) WaitQuiet(ctx context.Context, threshold float64, max time.Duration) float64 {
	deadline := time.Now().Add(max)
	for {
		busy, err := cpuBusy(ctx, 2*time.Second)
		if err != nil || busy < threshold || time.Now().After(deadline) || ctx.Err() != nil {
			if busy >= threshold {
				e.Log("the machine is still %.0f%% busy after waiting %s; going on", 100*busy, max)
			}
			return busy
		}
		e.Log("the machine is %.0f%% busy (another user?); waiting for it to calm down", 100*busy)
	}
}

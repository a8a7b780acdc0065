package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Report is everything one benchmark run measured.
type Report struct {
	Started  time.Time
	Took     time.Duration
	Latency  time.Duration
	Machine  string
	Versions string
	Sizes    Sizes
	P1       *P1Result
	P2       *P2Result
	P3       *P3Result
	P4       *P4Result
	P5       *P5Result
	P6       *P6Result
	Stress   *StressResult
	// Busy lists how busy the CPUs were (over 2 s) before each scenario started.
	Busy []string
}

// machine describes the host: cores, memory, CPU model, kernel.
func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	var si syscall.Sysinfo_t
	mem := "unknown memory"
	if syscall.Sysinfo(&si) == nil {
		mem = fmt.Sprintf("%.1f GiB RAM", float64(si.Totalram)*float64(si.Unit)/(1<<30))
	}
	var un syscall.Utsname
	kernel := ""
	if syscall.Uname(&un) == nil {
		kernel = ", Linux " + cstr(un.Release[:])
	}
	load := ""
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", load average at start " + strings.Join(strings.Fields(string(data))[:3], " ")
	}
	return fmt.Sprintf("%d cores (%s), %s%s, %s%s", runtime.NumCPU(), model, mem, kernel, runtime.Version(), load)
}

func cstr(b []int8) string {
	var s strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		s.WriteByte(byte(c))
	}
	return s.String()
}

// Markdown renders the report.
func (r *Report) Markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	lat := "none (loopback)"
	if r.Latency > 0 {
		lat = r.Latency.String() + " added to every git and registry request"
	}
	p("Run of %s, took %s. Latency: %s.\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second), lat)
	p("- Machine: %s%s.\n- Tools: %s.\n", r.Machine, loadNow(), r.Versions)
	if len(r.Busy) > 0 {
		p("- CPUs busy (over 2 s) before each scenario, after waiting for a quiet machine: %s.\n", strings.Join(r.Busy, ", "))
	}
	p("\n")
	var targets [][3]string
	if x := r.P1; x != nil {
		p("#### P1 single deploy: %d services, overlay of %d objects, apply and wait (median of %d runs)\n\n", x.Services, x.Objects, len(x.Deliver))
		dp := phaseMedians(x.Deliver)
		sp := phaseMedians(x.Script)
		dw, sw := walls(x.Deliver), walls(x.Script)
		dOther := median(dw) - sum(dp, "verify", "clone", "push", "apply", "wait")
		sOther := median(sw) - sum(sp, "clone", "edit", "commit", "push", "apply", "wait")
		p("| phase | deliver | baseline script |\n|---|---:|---:|\n")
		p("| verify (registry: the tag exists, resolve the digest) | %s | not done |\n", ms(dp["verify"]))
		p("| clone | %s | %s |\n", ms(dp["clone"]), ms(sp["clone"]))
		p("| edit + render check + commit + push (deliver: its `push` phase) | %s | %s |\n", ms(dp["push"]), ms(sp["edit"]+sp["commit"]+sp["push"]))
		p("| · of which edit | %s (in process) | %s |\n", ms(x.EditInProc), ms(sp["edit"]))
		p("| · of which render check (kustomize build) | %s (in process) | not done |\n", ms(x.BuildInProc))
		p("| · of which commit + push | ≈ %s (the rest) | %s |\n", ms(dp["push"]-x.EditInProc-x.BuildInProc), ms(sp["commit"]+sp["push"]))
		p("| apply | %s | %s |\n", ms(dp["apply"]), ms(sp["apply"]))
		p("| wait | %s | %s |\n", ms(dp["wait"]), ms(sp["wait"]))
		p("| rest (process start, cluster connection, overlay build for the apply; bash, kubectl start) | %s | %s |\n", ms(dOther), ms(sOther))
		p("| **end to end** | **%s** | **%s** |\n\n", ms(median(dw)), ms(median(sw)))
		p("Baseline / deliver: **%s** (end-to-end medians; each phase is its own median, so the column sums differ slightly). "+
			"deliver reports edit + render check + commit + push as one phase on its stderr (`push`); its split comes from timing "+
			"kustomize.SetImages and kustomize.Build on the same overlay in the harness. Ranges: deliver %s–%s, script %s–%s.\n\n",
			ratio(median(sw), median(dw)), ms(durStats(dw).Min), ms(durStats(dw).Max), ms(durStats(sw).Min), ms(durStats(sw).Max))
		q := float64(median(sw)) / float64(median(dw))
		targets = append(targets, [3]string{"P1 deliver ≥ 3× faster than the script", fmt.Sprintf("%.2f×", q), met(q >= 3)})
	}
	if x := r.P2; x != nil {
		p("#### P2 contention: N pipelines at once, one environment, distinct services, `--no-apply` (%d trial(s) each)\n\n", trialsOf(x))
		alone := ""
		if x.DeliverOne > 0 { // measured only when N = 1 is among the sizes
			alone = "; one deliver run alone: " + ms(x.DeliverOne)
		}
		p("One fetch + commit + push round alone (git CLI, warm clone, median of %d): **%s**%s. The serial limit is N × the round.\n\n", x.RoundSample, ms(x.Round), alone)
		p("| N | tool | landed | failed | lost | lost push attempts | pushes to the branch per landed change | wall (median) | serial limit | wall / serial limit | CPU: deploy processes | CPU: git server | CPU per landed change |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, row := range x.Rows {
			tool := row.Tool
			if tool == "script" {
				tool = "baseline script"
			}
			if row.HandWritten {
				tool += " (hand-written overlay)"
			}
			serial := time.Duration(row.N) * x.Round
			total := row.N * row.Trials
			perPush, perCPU := "–", "–"
			if row.Landed > 0 {
				perPush = fmt.Sprintf("%.2f", float64(row.Pushes)/float64(row.Landed))
				perCPU = ms((sumDurations(row.ClientCPU) + sumDurations(row.ServerCPU)) / time.Duration(row.Landed))
			}
			p("| %d | %s | %d/%d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n", row.N, tool, row.Landed, total, row.Failed, row.Lost, row.Retries, perPush,
				ms(median(row.Walls)), ms(serial), ratio(median(row.Walls), serial), ms(median(row.ClientCPU)), ms(median(row.ServerCPU)), perCPU)
			if row.Tool == "deliver" && row.N >= 32 {
				r := float64(median(row.Walls)) / float64(serial)
				targets = append(targets,
					[3]string{fmt.Sprintf("P2 %d/%d land, zero lost", row.N, row.N), fmt.Sprintf("%d/%d landed, %d lost", row.Landed, total, row.Lost), met(row.Landed == total && row.Lost == 0)},
					[3]string{fmt.Sprintf("P2 N=%d wall ≤ 1.0× the serial limit", row.N), fmt.Sprintf("%.2f×", r), met(r <= 1.0)})
			}
		}
		p("\n")
		if len(x.Rows) > 0 {
			var cmp []string
			for _, n := range nsOf(x) {
				var d, s *P2Row
				for i := range x.Rows {
					if x.Rows[i].N == n && !x.Rows[i].HandWritten {
						if x.Rows[i].Tool == "deliver" {
							d = &x.Rows[i]
						} else {
							s = &x.Rows[i]
						}
					}
				}
				if d != nil && s != nil {
					cmp = append(cmp, fmt.Sprintf("N=%d: %s", n, ratio(median(s.Walls), median(d.Walls))))
				}
			}
			p("Wall time baseline / deliver: %s (the baseline's wall ends early when its runs give up).\n\n", strings.Join(cmp, ", "))
		}
	}
	if x := r.P3; x != nil {
		p("#### P3 history growth: %d services, %d commits against %d commits (`--no-apply`, median of %d runs)\n\n", x.Services, x.BigCommits, x.SmallCommits, len(x.DeliverBig))
		db, ds := median(walls(x.DeliverBig)), median(walls(x.DeliverSmall))
		sb, ss := median(walls(x.ScriptBig)), median(walls(x.ScriptSmall))
		cb, cs := phaseMedians(x.DeliverBig)["clone"], phaseMedians(x.DeliverSmall)["clone"]
		pb, ps := phaseMedians(x.DeliverBig)["push"], phaseMedians(x.DeliverSmall)["push"]
		p("| config repo | commits | packed size | deliver | deliver clone | deliver push | baseline script (full clone) |\n|---|---:|---:|---:|---:|---:|---:|\n")
		p("| long history | %d | %s | %s | %s | %s | %s |\n", x.BigCommits, mb(x.BigBytes), ms(db), ms(cb), ms(pb), ms(sb))
		p("| short history | %d | %s | %s | %s | %s | %s |\n", x.SmallCommits, mb(x.SmallBytes), ms(ds), ms(cs), ms(ps), ms(ss))
		p("| **ratio** | | | **%s** | %s | %s | %s |\n\n", ratio(db, ds), ratio(cb, cs), ratio(pb, ps), ratio(sb, ss))
		p("Generating the %d-commit history with `git fast-import` took %s.\n\n", x.BigCommits, ms(x.Generate))
		q := float64(db) / float64(ds)
		targets = append(targets, [3]string{"P3 deploy time ratio ≤ 1.2", fmt.Sprintf("%.2f", q), met(q <= 1.2)})
	}
	if x := r.P4; x != nil {
		dp, sp := phaseMedians(x.Deliver), phaseMedians(x.Script)
		p("#### P4 apply scale: an overlay of %d objects (median of %d update runs after the creating run)\n\n", x.Objects, len(x.Deliver))
		p("| | deliver | kubectl (`apply --server-side -k` + `rollout status`) |\n|---|---:|---:|\n")
		p("| create everything: apply | %s | %s |\n", ms(x.DeliverCreate.Phases["apply"]), ms(x.ScriptCreate.Phases["apply"]))
		p("| create everything: wait | %s | %s |\n", ms(x.DeliverCreate.Phases["wait"]), ms(x.ScriptCreate.Phases["wait"]))
		p("| update one image: apply | %s | %s |\n", ms(dp["apply"]), ms(sp["apply"]))
		p("| update one image: wait | %s | %s |\n", ms(dp["wait"]), ms(sp["wait"]))
		dAW, sAW := dp["apply"]+dp["wait"], sp["apply"]+sp["wait"]
		p("| **update: apply + wait** | **%s** | **%s** |\n", ms(dAW), ms(sAW))
		p("| end to end (update run) | %s | %s |\n", ms(median(walls(x.Deliver))), ms(median(walls(x.Script))))
		rss := x.DeliverCreate.MaxRSS
		srss := x.ScriptCreate.MaxRSS
		for _, r := range x.Deliver {
			rss = max(rss, r.MaxRSS)
		}
		for _, r := range x.Script {
			srss = max(srss, r.MaxRSS)
		}
		p("| peak RSS | %s | %s (largest process of the script) |\n", mb(rss), mb(srss))
		p("| API requests to ConfigMaps and Secrets in the last update | %s | %s |\n\n", fmtCounts(x.DeliverRequests), fmtCounts(x.ScriptRequests))
		q := float64(sAW) / float64(max(dAW, 1))
		targets = append(targets,
			[3]string{"P4 apply + wait at least as fast as kubectl", fmt.Sprintf("kubectl/deliver %.2f×", q), met(dAW <= sAW)},
			[3]string{"P4 peak RSS ≤ 150 MB", mb(rss), met(rss <= 150e6)})
	}
	if x := r.P5; x != nil {
		st := durStats(x.Version)
		p("#### P5 image and start\n\n")
		p("| | |\n|---|---:|\n")
		p("| `deliver version` wall time (median of %d; min–max) | **%s** (%s–%s) |\n", st.N, fmt.Sprintf("%.1f ms", float64(st.Median)/1e6), fmt.Sprintf("%.1f", float64(st.Min)/1e6), fmt.Sprintf("%.1f ms", float64(st.Max)/1e6))
		p("| bin/deliver | %s (gzip: %s) |\n", mb(x.BinaryBytes), mb(x.BinaryGzipBytes))
		if x.Image != nil {
			for _, m := range x.Image {
				var ls []string
				for _, l := range m.Layers {
					ls = append(ls, mb(l))
				}
				p("| image %s (%s), compressed | **%s** (layers %s, config %d B) |\n", x.ImageDir, m.Platform, mb(m.Total()), strings.Join(ls, " + "), m.ConfigBytes)
			}
		} else {
			p("| image | not measured: %s |\n", x.ImageNotMeasured)
		}
		p("\n")
		if x.Image != nil {
			var worst int64
			for _, m := range x.Image {
				worst = max(worst, m.Total())
			}
			targets = append(targets, [3]string{"P5 image ≤ 40 MB", mb(worst), met(worst <= 40e6)})
		} else {
			targets = append(targets, [3]string{"P5 image ≤ 40 MB", "not measured (binary gzip " + mb(x.BinaryGzipBytes) + ")", "—"})
		}
		targets = append(targets, [3]string{"P5 start ≤ 50 ms", fmt.Sprintf("%.1f ms", float64(st.Median)/1e6), met(st.Median <= 50*time.Millisecond)})
	}
	if x := r.P6; x != nil {
		p6Markdown(p, x)
	}
	if x := r.Stress; x != nil {
		st := durStats(x.Walls)
		p("#### Stress: %d pipelines × %d trials (deliver, `--no-apply`)\n\n", x.N, x.Trials)
		p("| deploys | landed | failed | lost | trials with a non-linear history | commits checked | commits that do not render | lost push attempts | most attempts by one run | wall per trial (median, min–max) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		p("| %d | %d | %d | %d | %d | %d | %d | %d | %d | %s (%s–%s) |\n\n", x.Deploys, x.Landed, x.Failed, x.Lost, x.NonLinear, x.CommitsChecked, x.NotRendering, x.Retries, x.MaxAttempts,
			ms(st.Median), ms(st.Min), ms(st.Max))
		for _, pr := range x.Problems {
			p("- problem: %s\n", pr)
		}
		ok := x.Lost == 0 && x.Failed == 0 && x.NonLinear == 0 && x.NotRendering == 0
		targets = append(targets, [3]string{"stress: zero lost, linear history, every commit renders", fmt.Sprintf("%d lost, %d non-linear, %d not rendering", x.Lost, x.NonLinear, x.NotRendering), met(ok)})
	}
	if len(targets) > 0 {
		p("#### Targets\n\n| target | measured | met |\n|---|---|---|\n")
		for _, t := range targets {
			p("| %s | %s | %s |\n", t[0], t[1], t[2])
		}
		p("\n")
	}
	return b.String()
}

func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func walls(rs []Run) []time.Duration {
	var d []time.Duration
	for _, r := range rs {
		d = append(d, r.Wall)
	}
	return d
}

// phaseMedians returns the median of each phase over runs.
func phaseMedians(rs []Run) map[string]time.Duration {
	all := map[string][]time.Duration{}
	for _, r := range rs {
		for k, v := range r.Phases {
			all[k] = append(all[k], v)
		}
	}
	out := map[string]time.Duration{}
	for k, v := range all {
		out[k] = median(v)
	}
	return out
}

// sumDurations adds durations up.
func sumDurations(ds []time.Duration) time.Duration {
	var t time.Duration
	for _, d := range ds {
		t += d
	}
	return t
}

func sum(m map[string]time.Duration, keys ...string) time.Duration {
	var s time.Duration
	for _, k := range keys {
		s += m[k]
	}
	return s
}

func fmtCounts(c map[string]int) string {
	if len(c) == 0 {
		return "none"
	}
	var keys []string
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", c[k], k))
	}
	return strings.Join(parts, ", ")
}

func trialsOf(x *P2Result) int {
	if len(x.Rows) == 0 {
		return 0
	}
	return x.Rows[0].Trials
}

func nsOf(x *P2Result) []int {
	seen := map[int]bool{}
	var ns []int
	for _, r := range x.Rows {
		if !seen[r.N] && !r.HandWritten {
			seen[r.N] = true
			ns = append(ns, r.N)
		}
	}
	return ns
}

// writeSection replaces the text between "<!-- BEGIN name -->" and "<!-- END name -->" in
// path with body, or appends the section if the markers are missing.
func writeSection(path, name, title, body string) error {
	begin, end := "<!-- BEGIN "+name+" (written by `go run ./bench`; do not edit by hand) -->", "<!-- END "+name+" -->"
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(data)
	block := begin + "\n\n" + strings.TrimSpace(body) + "\n\n" + end
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i >= 0 && j > i {
		s = s[:i] + block + s[j+len(end):]
	} else {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "\n### " + title + "\n\n" + block + "\n"
	}
	return os.WriteFile(path, []byte(s), 0o644)
}

// loadNow is ", at the end N N N" from /proc/loadavg: the machine is shared, and a busy
// neighbour shows up here.
func loadNow() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return ", at the end " + strings.Join(strings.Fields(string(data))[:3], " ")
}

// p6Markdown renders P6: push to ready through Flux against the direct apply.
func p6Markdown(p func(string, ...any), x *P6Result) {
	n := 0
	if len(x.Rows) > 0 {
		n = len(x.Rows[0].Runs)
	}
	p("#### P6 hand-off to Flux: %d services, overlay of %d objects, one image per deploy (median of %d runs each; min–max)\n\n", x.Services, x.Objects, n)
	p("| how | end to end | push → ready | Flux fetched the commit | Flux applied it (its reconcile latency) | workloads rolled out | Flux's share of push → ready |\n|---|---:|---:|---:|---:|---:|---:|\n")
	rng := func(ds []time.Duration) string {
		st := durStats(ds)
		return fmt.Sprintf("%s (%s–%s)", ms(st.Median), ms(st.Min), ms(st.Max))
	}
	for _, row := range x.Rows {
		var ready, fetched, applied, rolled []time.Duration
		var shares []float64
		for _, r := range row.Runs {
			pr := pushToReady(r, row.Flux)
			ready = append(ready, pr)
			if f, a, ro, ok := fluxTimes(r); ok {
				fetched, applied, rolled = append(fetched, f), append(applied, a), append(rolled, max(ro, a))
				if pr > 0 {
					shares = append(shares, float64(a)/float64(pr))
				}
			}
		}
		if !row.Flux {
			p("| %s | %s | %s | — | — | — | — |\n", row.Name, rng(walls(row.Runs)), rng(ready))
			continue
		}
		share := "—"
		if len(shares) > 0 {
			sort.Float64s(shares)
			share = fmt.Sprintf("%.0f%%", 100*shares[len(shares)/2])
		}
		p("| %s | %s | %s | %s | %s | %s | %s |\n", row.Name, rng(walls(row.Runs)), rng(ready), rng(fetched), rng(applied), rng(rolled), share)
	}
	p("\n")
	p("Push → ready is deliver's `apply` + `wait` phases for the direct apply, and its `reconcile` phase through Flux (from the end of the push: the reconcile request, Flux's fetch, build, apply, then the rollout). The Flux columns count from deliver's request, as deliver reports them; Flux's share is the median of each run's applied / push → ready, the part deliver cannot shorten. The Flux controllers started in %s.\n\n", ms(x.FluxStart))
}

package main

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
)

// ---- P6: hand-off to Flux ------------------------------------------------------------------

// P6Result holds the runs of one overlay delivered three ways: deliver's own apply, and
// through Flux with the Kustomization's health checks off and on.
type P6Result struct {
	Services, Objects int
	// FluxStart is how long the Flux controllers took to start (CRDs included).
	FluxStart time.Duration
	Rows      []P6Row
}

// P6Row is one way of delivering and its runs.
type P6Row struct {
	Name string
	// Flux is false for the direct apply.
	Flux bool
	Runs []Run
}

// P6 deploys one image at a time into an overlay of P6Services services (each with a Service),
// with deliver's direct apply and through Flux (a Kustomization with spec.wait false, and one
// with spec.wait true), each against its own config repo and namespace, in turns.
func P6(ctx context.Context, e *Env, im *images, s Sizes) (*P6Result, error) {
	f, err := testenv.StartFlux(ctx, e.Cluster, testenv.FluxOptions{Namespace: "flux-bench"})
	if err != nil {
		return nil, err
	}
	defer f.Stop()
	mk := func(name string) Fixture {
		return Fixture{Services: services(s.P6Services), Env: name, NS: name, Registry: e.Reg.Host, Tag: "1.0.0", WithServices: true}
	}
	res := &P6Result{Services: s.P6Services, Objects: mk("x").Objects(), FluxStart: f.StartupTime}
	type way struct {
		name  string
		wait  bool // the Kustomization's spec.wait
		flux  bool
		t     Target
		fixed Fixture
	}
	ways := []*way{
		{name: "direct: deliver applies and waits (`apply` + `wait`)"},
		{name: "Flux, Kustomization `wait: false` (deliver waits for the rollout)", flux: true},
		{name: "Flux, Kustomization `wait: true` (Flux's health checks, then deliver's)", flux: true, wait: true},
	}
	for i, w := range ways {
		name := fmt.Sprintf("p6-%d", i)
		w.fixed = mk(name)
		if w.t, err = e.createRepo(name, w.fixed); err != nil {
			return nil, err
		}
		w.t.Apply = true
		if !w.flux {
			continue
		}
		if err := f.CreateGitRepository(ctx, testenv.GitRepository{Name: name, URL: w.t.URL, Branch: "main", Username: e.Git.Username, Password: e.Git.Password}); err != nil {
			return nil, err
		}
		if err := f.CreateKustomization(ctx, testenv.Kustomization{Name: name, Source: name, Path: "./overlays/" + name, Prune: true, Wait: w.wait}); err != nil {
			return nil, err
		}
	}
	for _, w := range ways {
		res.Rows = append(res.Rows, P6Row{Name: w.name, Flux: w.flux})
	}
	// Run 0 creates the namespaces and every object (through Flux: its first sync) and is not
	// counted.
	for i := 0; i <= s.P6Runs; i++ {
		svc := services(s.P6Services)[i%s.P6Services]
		for k := range ways {
			w := ways[(k+i)%len(ways)] // each way goes first in turn
			d, digest, err := e.deployOf(im, w.fixed, svc, fmt.Sprintf("6.%d.0", i+1))
			if err != nil {
				return nil, err
			}
			var extra []string
			if w.flux {
				extra = []string{"--flux-kustomization", f.Namespace + "/" + w.t.Env}
			}
			r, err := e.deliver(ctx, nil, w.t, d, extra...)
			if err == nil && !r.OK() {
				err = fmt.Errorf("P6 %s run %d failed:\n%s", w.name, i, r)
			}
			if err == nil {
				err = e.checkLanded(w.t, d, digest)
			}
			if err != nil {
				return nil, err
			}
			row := &res.Rows[(k+i)%len(ways)]
			if i == 0 {
				e.Log("P6 warm-up %s: %s %s", row.Name, ms(r.Wall), fmtPhases(r.Phases))
				continue
			}
			row.Runs = append(row.Runs, r)
			e.Log("P6 run %d/%d %s: %s %s", i, s.P6Runs, row.Name, ms(r.Wall), fmtPhases(r.Phases))
		}
	}
	return res, nil
}

// fluxTimesRE matches deliver's summary of a wait through an engine.
var fluxTimesRE = regexp.MustCompile(`fetched in (\S+), applied in (\S+), rolled out in (\S+) \(from the request\)`)

// fluxTimes reads, from a run through Flux, how long after deliver's request Flux fetched the
// commit, reported it applied, and the workloads were rolled out.
func fluxTimes(r Run) (fetched, applied, rolledOut time.Duration, ok bool) {
	m := fluxTimesRE.FindStringSubmatch(r.Stderr)
	if m == nil {
		return 0, 0, 0, false
	}
	var ds [3]time.Duration
	for i := range ds {
		d, err := time.ParseDuration(m[i+1])
		if err != nil {
			return 0, 0, 0, false
		}
		ds[i] = d
	}
	return ds[0], ds[1], ds[2], true
}

// pushToReady is the time from the end of the push to the rollout's end: deliver's apply and
// wait phases, or its reconcile phase through Flux.
func pushToReady(r Run, flux bool) time.Duration {
	if flux {
		return r.Phases["reconcile"]
	}
	return r.Phases["apply"] + r.Phases["wait"]
}

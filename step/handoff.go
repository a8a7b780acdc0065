// handoff.go owns the hand-off to a GitOps engine (--apply-via, deliver.yaml's apply:): who
// applies the pushed change, and asking the engine to reconcile and waiting for it.

package step

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/resmap"

	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/engine"
	"github.com/deliverhq/deliver/step/engine/flux"
	"github.com/deliverhq/deliver/step/policy"
)

// Flags that hand the pushed change to a GitOps engine in the cluster.
const (
	flagApplyVia          = "apply-via"
	flagFluxKustomization = "flux-kustomization"
)

// objectActionFlux is the action of an object in the outcome when Flux applied it.
const objectActionFlux = "applied-by-flux"

// handOffFlags choose who applies the pushed change: deliver, or Flux.
func handOffFlags() []cli.Flag {
	const cat = "Cluster"
	return []cli.Flag{
		&cli.StringFlag{Name: flagApplyVia, Category: cat, EnvVars: env(flagApplyVia), Usage: "who applies the pushed change: direct (deliver's server-side apply) or flux (the Flux Kustomization applies it; deliver asks Flux to reconcile now and waits); default: the environment's apply in deliver.yaml, else direct"},
		&cli.StringFlag{Name: flagFluxKustomization, Category: cat, EnvVars: env(flagFluxKustomization), Usage: "the Flux Kustomization that applies the environment's overlay, namespace/name (a name alone is in flux-system); implies --apply-via flux; default: environments.<env>.flux.kustomization in deliver.yaml"},
	}
}

// bindHandOff validates --apply-via and --flux-kustomization, before anything is contacted.
func bindHandOff(c *cli.Context) (via, kustomization string, err error) {
	via, kustomization = c.String(flagApplyVia), c.String(flagFluxKustomization)
	switch via {
	case "", policy.ApplyDirect, policy.ApplyFlux:
	default:
		return "", "", usage(fmt.Errorf("--%s %q: want %s or %s", flagApplyVia, via, policy.ApplyDirect, policy.ApplyFlux))
	}
	if kustomization == "" {
		return via, "", nil
	}
	if _, _, err := policy.ParseKustomization(kustomization); err != nil {
		return "", "", usage(fmt.Errorf("--%s: %w", flagFluxKustomization, err))
	}
	if via == policy.ApplyDirect {
		return "", "", usage(fmt.Errorf("--%s names the Flux Kustomization that applies the change, and --%s %s says deliver applies it: give one of them", flagFluxKustomization, flagApplyVia, policy.ApplyDirect))
	}
	return via, kustomization, nil
}

// handOff decides who applies the environment's changes, from --apply-via,
// --flux-kustomization and the environment's apply in the deliver.yaml of the tip cloned, and
// with Flux sets a.engine. A run may hand an environment to Flux where the file does not say
// so, never the other way round: deliver applying the objects Flux applies would fight it over
// them (exit 8).
func (a *applier) handOff(repo *configrepo.Repo, envName, overlay string) error {
	pol, err := policy.Load(repo.Dir())
	if err != nil {
		return usage(err)
	}
	fileVia, fileKustomization := pol.ApplyVia(envName)
	via, kustomization := a.applyVia, a.fluxKustomization
	switch {
	case via == policy.ApplyDirect && fileVia == policy.ApplyFlux:
		return fmt.Errorf("%w: environment %s is applied by Flux (%s: environments.%s.apply: flux, Kustomization %s); deliver applying it too would fight Flux over its objects: drop --%s %s",
			errPolicy, envName, policy.FileName, envName, fileKustomization, flagApplyVia, policy.ApplyDirect)
	case via == "" && kustomization == "":
		via, kustomization = fileVia, fileKustomization
	case via != policy.ApplyDirect:
		via = policy.ApplyFlux
		if kustomization == "" {
			kustomization = fileKustomization
		} else if fileKustomization != "" && kustomization != fileKustomization {
			a.r.rep.Logf("--%s %s instead of %s's Kustomization %s for environment %s", flagFluxKustomization, kustomization, policy.FileName, fileKustomization, envName)
		}
	}
	a.engine = nil
	if via != policy.ApplyFlux {
		return nil
	}
	if kustomization == "" {
		return usage(fmt.Errorf("--%s %s: no Flux Kustomization named for environment %s; give --%s namespace/name or set environments.%s.flux.kustomization in %s",
			flagApplyVia, policy.ApplyFlux, envName, flagFluxKustomization, envName, policy.FileName))
	}
	ns, name, err := policy.ParseKustomization(kustomization)
	if err != nil {
		return usage(fmt.Errorf("environment %s: Flux Kustomization %w", envName, err))
	}
	a.engine = flux.New(a.client, flux.Options{Namespace: ns, Name: name, Branch: repo.Branch(), URL: repo.URL(), Path: overlay,
		Warn: func(m string) { a.r.rep.Warnf("%s", m) }})
	a.r.rep.Logf("%s applies environment %s: deliver pushes, asks Flux to reconcile and waits; it applies nothing itself", a.engine, envName)
	var ignored []string
	if a.prune {
		ignored = append(ignored, "--"+flagPrune+" (the Kustomization's spec.prune decides)")
	}
	if a.force {
		ignored = append(ignored, "--"+flagForceConfl+" (Flux takes its fields by force)")
	}
	if a.namespace != "" {
		ignored = append(ignored, "--"+flagNamespace+" (the Kustomization's targetNamespace decides)")
	}
	if len(ignored) > 0 {
		a.r.rep.Warnf("ignored, Flux applies the change: %s", strings.Join(ignored, ", "))
	}
	return nil
}

// checkEngine reads the engine's objects before anything is pushed, within --timeout: a
// suspended one is refused (exit 8), a missing one or a cluster without the engine is bad
// input (exit 2), an unreachable cluster exit 6.
func (a *applier) checkEngine(ctx context.Context) (engine.State, error) {
	cctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	st, err := a.engine.Check(cctx)
	if err = a.deadline(ctx, cctx, "reading "+a.engine.String(), err); err != nil {
		return st, err
	}
	a.r.rep.Logf("%s: %s", st.Object, describeState(st))
	return st, nil
}

// describeState sums up an engine object's state in one line.
func describeState(st engine.State) string {
	s := "Ready=" + orDash(st.Ready)
	if st.Reason != "" {
		s += " " + st.Reason
	}
	s += ", last applied " + orDash(short(st.Applied))
	if st.Attempted != "" && st.Attempted != st.Applied {
		s += ", last attempted " + short(st.Attempted)
	}
	s += fmt.Sprintf("; %s at %s", st.Source, orDash(short(st.Fetched)))
	if st.SourceReady != "" && st.SourceReady != "True" {
		s += fmt.Sprintf(" (Ready=%s %s: %s)", st.SourceReady, st.SourceReason, st.SourceMessage)
	}
	return s
}

// deliver rolls the change out once it is pushed as commit, which the clone's work tree holds:
// with deliver's own apply of the overlay (rendered, when already built) and wait; handed to an
// engine, by asking it to reconcile now and waiting until it applied commit (or a later commit
// containing it) and the workloads running images rolled out (every workload it applied, with
// no images).
func (a *applier) deliver(ctx context.Context, repo *configrepo.Repo, overlay string, rendered resmap.ResMap, commit string, images []string, out *ci.Outcome) error {
	if a.engine == nil {
		return a.run(ctx, repo.Dir(), overlay, rendered, out)
	}
	return a.sync(ctx, repo, commit, images, false, out)
}

// sync hands commit to the engine and waits (see deliver); with reapply the engine also
// applies its revision again (`deliver apply`). --timeout bounds the whole wait.
func (a *applier) sync(ctx context.Context, repo *configrepo.Repo, commit string, images []string, reapply bool, out *ci.Outcome) error {
	rep := a.r.rep
	end := rep.Phase("reconcile", fmt.Sprintf("asking %s to apply %s; waiting up to %s", a.engine, short(commit), a.timeout))
	last := map[string]string{} // the state each object's last progress line gave
	res, err := a.engine.Sync(ctx, engine.Request{
		Commit: commit,
		Contains: func(ctx context.Context, revision, commit string) (bool, error) {
			return repo.Contains(ctx, revision, commit)
		},
		Images: images, Reapply: reapply, SkipRollout: !a.wait, Timeout: a.timeout,
		Progress: func(line string) {
			rep.Logf("%s", line)
			if ref, state, ok := strings.Cut(line, ": "); ok {
				last[ref] = state
			}
		},
	})
	out.Applied = len(res.Inventory)
	out.Objects = engineStatuses(res, last, err)
	if err != nil {
		if isRolloutFailure(err) {
			out.Rollout = "failed"
		}
		if errors.Is(err, engine.ErrNotFetched) {
			err = fmt.Errorf("%w; commit %s stays pushed and is not reverted (Flux applied nothing of it, and would not fetch a revert either): Flux applies it once its source fetches again", err, short(commit))
		}
		end(err)
		return err
	}
	if res.Revision != commit {
		rep.Logf("%s applied %s, a later commit that contains %s", a.engine, short(res.Revision), short(commit))
	}
	rep.Logf("fetched in %s, applied in %s, rolled out in %s (from the request)", engine.Elapsed(res.Fetched), engine.Elapsed(res.Applied), engine.Elapsed(max(res.RolledOut, res.Applied)))
	out.Rollout = "ready"
	if !a.wait {
		out.Rollout = "not-waited"
	}
	end(nil)
	return nil
}

// engineStatuses lists what the engine applied for the outcome: each object with the state its
// wait left it in, for the workloads waited for.
func engineStatuses(res engine.Result, last map[string]string, err error) []ci.ObjectStatus {
	waited := make([]ci.ObjectStatus, 0, len(res.Workloads))
	for _, w := range res.Workloads {
		waited = append(waited, ci.ObjectStatus{Object: w.String(), Action: objectActionFlux})
	}
	waitedStatuses(waited, last, err)
	status := map[string]string{}
	for _, w := range waited {
		status[w.Object] = w.Status
	}
	out := make([]ci.ObjectStatus, 0, len(res.Inventory))
	for _, ref := range res.Inventory {
		out = append(out, ci.ObjectStatus{Object: ref.String(), Action: objectActionFlux, Status: status[ref.String()]})
	}
	return out
}

// changedImages are the image references a change set (what the workloads run once it rolled
// out); none when it set none.
func changedImages(er editResult) []string {
	var out []string
	for _, ch := range er.changes {
		if ch.To != "" {
			out = append(out, ch.To)
		}
	}
	return out
}

// engineDryRun is a dry run's look at the engine: its state and what it would be asked.
func (a *applier) engineDryRun(ctx context.Context, out *ci.Outcome) error {
	end := a.r.rep.Phase("reconcile", "dry run: reading "+a.engine.String())
	st, err := a.checkEngine(ctx)
	if err != nil {
		end(err)
		return err
	}
	fmt.Fprintf(a.r.stdout, "# cluster: %s would apply the commit (%s); deliver would ask it to reconcile and wait\n", st.Object, describeState(st))
	out.Rollout = "dry-run"
	end(nil)
	return nil
}

// maxPending bounds the commits engineDiff lists.
const maxPending = 50

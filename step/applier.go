// applier.go owns the applier (build, server-side apply, wait) that every command applying an
// environment uses, and envApplier, which apply and diff share to bind, clone and hand off.

package step

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/resmap"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/cluster"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/engine"
)

// applier applies an environment's overlay to the cluster: build, server-side apply (with
// prune through the environment's ApplySet), wait.
type applier struct {
	r         *runner
	client    *cluster.Client
	envName   string
	namespace string
	prune     bool
	wait      bool
	timeout   time.Duration
	force     bool
	// said holds the notes about replicas and the warnings already logged, so that the dry run
	// before the push and the apply after it say each once.
	said map[string]bool
	// applyVia and fluxKustomization are --apply-via and --flux-kustomization as given.
	applyVia, fluxKustomization string
	// engine, when handOff chose one, applies the pushed change instead of deliver, which asks
	// it to reconcile and waits (see handoff.go).
	engine engine.Engine
}

// newApplier connects to the cluster (no request is made yet: a bad kubeconfig or context is
// reported before anything is pushed).
func (r *runner) newApplier(ctx context.Context, c *cli.Context, envName string) (*applier, error) {
	if c.Duration(flagTimeout) <= 0 {
		return nil, usage(fmt.Errorf("--%s must be positive", flagTimeout))
	}
	via, kustomization, err := bindHandOff(c)
	if err != nil {
		return nil, err
	}
	client, err := cluster.Connect(ctx, r.clusterOptions(c))
	if err != nil {
		return nil, err
	}
	return &applier{
		applyVia: via, fluxKustomization: kustomization,
		r: r, client: client, envName: envName,
		namespace: c.String(flagNamespace),
		prune:     c.Bool(flagPrune),
		wait:      c.Bool(flagWait),
		timeout:   c.Duration(flagTimeout),
		force:     c.Bool(flagForceConfl),
		said:      map[string]bool{},
	}, nil
}

// maybeApplier returns the applier of a command that applies unless --no-apply (or a dry run
// without a cluster) says otherwise; nil means no apply.
func (r *runner) maybeApplier(ctx context.Context, c *cli.Context, envName string) (*applier, error) {
	if v := c.String(flagOnFailure); v != "" && v != onFailureRevert && v != onFailureKeep {
		return nil, usage(fmt.Errorf("--%s %q: want %s or %s", flagOnFailure, v, onFailureRevert, onFailureKeep))
	}
	if c.Bool(flagNoApply) {
		for _, f := range []string{flagApplyVia, flagFluxKustomization} {
			if c.String(f) != "" {
				return nil, usage(fmt.Errorf("--%s applies nothing, and --%s says who applies: give one of them", flagNoApply, f))
			}
		}
		return nil, nil
	}
	return r.newApplier(ctx, c, envName)
}

// objects renders the overlay into the objects to apply and the namespace for objects left
// without one. rendered, when not nil, is the overlay's build already made (by the edit that
// committed it) and is used instead of building again.
func (a *applier) objects(root, overlay string, rendered resmap.ResMap) ([]*unstructured.Unstructured, string, error) {
	rm := rendered
	if rm == nil {
		var err error
		if rm, err = kustomize.Build(root, overlay); err != nil {
			return nil, "", usage(kustomize.RootRelative(root, err)) // the repo's content is at fault: bad input
		}
	}
	var objs []*unstructured.Unstructured
	namespaces := map[string]bool{}
	for _, res := range rm.Resources() {
		m, err := res.Map()
		if err != nil {
			return nil, "", fmt.Errorf("reading rendered %s: %w", res.CurId(), err)
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "Namespace" {
			namespaces[u.GetName()] = true
		} else if ns := u.GetNamespace(); ns != "" {
			namespaces[ns] = true
		}
		objs = append(objs, u)
	}
	ns := a.namespace
	if ns == "" {
		if len(namespaces) == 1 {
			for n := range namespaces {
				ns = n
			}
		} else {
			ns = "default"
		}
	}
	return objs, ns, nil
}

func (a *applier) applyOptions(ns string, dryRun bool) cluster.ApplyOptions {
	return cluster.ApplyOptions{
		FieldManager:     "deliver",
		ForceConflicts:   a.force,
		DefaultNamespace: ns,
		Prune:            a.prune,
		ApplySet:         cluster.ApplySetRef{Name: "deliver-" + a.envName, Namespace: ns},
		DryRun:           dryRun,
		Tooling:          "deliver/" + version,
		// An autoscaler's replica count is never reset: see README, "Replicas and autoscalers".
		AutoscaledReplicas:  true,
		KeepForeignReplicas: true,
	}
}

// tell logs, once per run, what an apply (or its dry run) left to an autoscaler or to another
// field manager, and what it could not check.
func (a *applier) tell(res cluster.ApplyResult) {
	once := func(s string) bool {
		if a.said[s] {
			return false
		}
		a.said[s] = true
		return true
	}
	for _, w := range res.Warnings {
		if once(w) {
			a.r.rep.Warnf("%s", w)
		}
	}
	for _, o := range res.Objects {
		l := o.Replicas
		switch {
		case l == nil:
		case l.Autoscaled:
			if s := fmt.Sprintf("%s: spec.replicas is left to %s (%d now; the overlay's %d is not applied)", o.Ref, l.By, l.Live, l.Given); once(s) {
				a.r.rep.Logf("%s", s)
			}
		default:
			if s := fmt.Sprintf("%s: spec.replicas stays %d, as %s set it; the overlay says %d, and --%s never resets replicas (scale it to %d to hand it back to the overlay)",
				o.Ref, l.Live, l.By, l.Given, flagForceConfl, l.Given); once(s) {
				a.r.rep.Warnf("%s", s)
			}
		}
	}
}

// preflight is the server-side dry run of the overlay at root/overlay (rendered, when already
// built) that runs before the push: a field conflict, an object the API server rejects or a
// request it forbids ends the run then, with nothing pushed, rather than after the commit is
// on the branch.
func (a *applier) preflight(ctx context.Context, root, overlay string, rendered resmap.ResMap) error {
	if a.engine != nil {
		return nil // deliver applies nothing: the engine does, and Check read it before
	}
	objs, ns, err := a.objects(root, overlay, rendered)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	opts := a.applyOptions(ns, true)
	// The apply after the push reads the objects again: this check may read them as it does.
	opts.ListInDryRun = true
	res, err := a.client.Apply(actx, objs, opts)
	a.tell(res)
	if err = a.deadline(ctx, actx, "the server-side dry run", err); err != nil {
		return fmt.Errorf("before pushing, %w; nothing was pushed", err)
	}
	a.r.rep.Logf("server-side dry run of %d object(s) passed", len(objs))
	return nil
}

// deadline reports an operation that ran out of --timeout (and not because deliver was
// interrupted) as the cluster not answering in time (exit code 6).
func (a *applier) deadline(ctx, opCtx context.Context, what string, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, cluster.ErrUnreachable) {
		return err
	}
	if !errors.Is(opCtx.Err(), context.DeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: %s on %s took longer than --%s=%s: %w", cluster.ErrUnreachable, what, a.client.Host(), flagTimeout, a.timeout, err)
}

// check makes sure the cluster answers and accepts the credentials (cluster.Client.Check),
// within --timeout; handed to an engine, that the engine takes the change (checkEngine).
func (a *applier) check(ctx context.Context) error {
	if a.engine != nil {
		_, err := a.checkEngine(ctx)
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	err := a.deadline(ctx, cctx, "reaching the cluster", a.client.Check(cctx))
	if err != nil {
		return err
	}
	a.r.rep.Logf("cluster %s answers", a.client.Host())
	return nil
}

// run applies the overlay at root/overlay (or its build, rendered, when already made) and
// waits for it.
func (a *applier) run(ctx context.Context, root, overlay string, rendered resmap.ResMap, out *ci.Outcome) error {
	rep := a.r.rep
	objs, ns, err := a.objects(root, overlay, rendered)
	if err != nil {
		return err
	}
	end := rep.Phase("apply", fmt.Sprintf("server-side apply of %d object(s) (default namespace %s)", len(objs), ns))
	// --timeout bounds the apply too: a hung API server must not hang deliver.
	actx, cancel := context.WithTimeout(ctx, a.timeout)
	res, err := a.client.Apply(actx, objs, a.applyOptions(ns, false))
	a.tell(res)
	err = a.deadline(ctx, actx, "applying", err)
	cancel()
	if err != nil {
		end(err)
		return err
	}
	counts := map[cluster.Action]int{}
	for _, o := range res.Objects {
		counts[o.Action]++
		if o.Action != cluster.ActionUnchanged {
			rep.Logf("%s %s", o.Ref, o.Action)
		}
	}
	for _, p := range res.Pruned {
		rep.Logf("%s pruned", p)
	}
	rep.Logf("%d created, %d configured, %d unchanged, %d pruned", counts[cluster.ActionCreated], counts[cluster.ActionConfigured], counts[cluster.ActionUnchanged], len(res.Pruned))
	out.Applied, out.Pruned = len(res.Objects), len(res.Pruned)
	out.Objects = objectStatuses(res)
	end(nil)
	if !a.wait {
		out.Rollout = "not-waited"
		return nil
	}
	refs := make([]cluster.ObjectRef, 0, len(res.Objects))
	seen := make([]*unstructured.Unstructured, 0, len(res.Objects))
	for _, o := range res.Objects {
		refs = append(refs, o.Ref)
		seen = append(seen, o.Object)
	}
	end = rep.Phase("wait", fmt.Sprintf("waiting up to %s for %d object(s) to be ready", a.timeout, len(refs)))
	last := map[string]string{} // the state each object's last progress line gave
	err = a.client.Wait(ctx, refs, cluster.WaitOptions{Timeout: a.timeout, Seen: seen, Progress: func(line string) {
		rep.Logf("%s", line)
		if ref, state, ok := strings.Cut(line, ": "); ok {
			last[ref] = state
		}
	}})
	waitedStatuses(out.Objects, last, err)
	if err != nil {
		out.Rollout = "failed"
		end(err)
		return err
	}
	out.Rollout = "ready"
	end(nil)
	return nil
}

// objectStatuses lists the objects of an apply, then the pruned ones, for the outcome's
// rollout per object (their statuses come from the wait).
func objectStatuses(res cluster.ApplyResult) []ci.ObjectStatus {
	out := make([]ci.ObjectStatus, 0, len(res.Objects)+len(res.Pruned))
	for _, o := range res.Objects {
		out = append(out, ci.ObjectStatus{Object: o.Ref.String(), Action: string(o.Action)})
	}
	for _, p := range res.Pruned {
		out = append(out, ci.ObjectStatus{Object: p.String(), Action: string(cluster.ActionPruned)})
	}
	return out
}

// waitedStatuses fills in the state the wait left each applied object in: the last progress
// line of an object that was not ready at once ("2/2 ready"), Current for one that was; after
// a failed rollout, the status (Failed, InProgress...) the error lists for each object that
// is not Current; unknown when the wait ended otherwise (the cluster stopped answering).
func waitedStatuses(objs []ci.ObjectStatus, last map[string]string, err error) {
	for i := range objs {
		o := &objs[i]
		if o.Action == string(cluster.ActionPruned) {
			continue
		}
		state, seen := last[o.Object]
		switch {
		case err == nil && seen:
			o.Status = state
		case err == nil:
			o.Status = "Current"
		case !errors.Is(err, cluster.ErrRolloutFailed):
			o.Status = "unknown"
		default:
			o.Status = "Current"
			for _, line := range strings.Split(err.Error(), "\n") {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(line), o.Object+": "); ok {
					o.Status, _, _ = strings.Cut(rest, ": ")
				}
			}
		}
	}
}

// dryRun reports what applying the overlay would change, changing nothing.
func (a *applier) dryRun(ctx context.Context, root, overlay string, rendered resmap.ResMap, out *ci.Outcome) error {
	if a.engine != nil {
		return a.engineDryRun(ctx, out)
	}
	objs, ns, err := a.objects(root, overlay, rendered)
	if err != nil {
		return err
	}
	end := a.r.rep.Phase("apply", fmt.Sprintf("server-side dry run of %d object(s)", len(objs)))
	actx, cancel := context.WithTimeout(ctx, a.timeout)
	res, err := a.client.Apply(actx, objs, a.applyOptions(ns, true))
	a.tell(res)
	err = a.deadline(ctx, actx, "the server-side dry run", err)
	cancel()
	if err != nil {
		end(err)
		return err
	}
	for _, o := range res.Objects {
		fmt.Fprintf(a.r.stdout, "# cluster: %s would be %s\n", o.Ref, o.Action)
	}
	for _, p := range res.Pruned {
		fmt.Fprintf(a.r.stdout, "# cluster: %s would be pruned\n", p)
	}
	out.Applied, out.Pruned = len(res.Objects), len(res.Pruned)
	out.Objects = objectStatuses(res)
	out.Rollout = "dry-run"
	end(nil)
	return nil
}

// bindCheckout validates --env, --path-template and the config-repo flags.
func (r *runner) bindCheckout(c *cli.Context, envName string) (string, configrepo.Options, error) {
	if err := validateEnvName(envName); err != nil {
		return "", configrepo.Options{}, usage(err)
	}
	overlay, err := overlayPath(c.String(flagPathTemplate), envName)
	if err != nil {
		return "", configrepo.Options{}, usage(err)
	}
	opts, err := r.configRepoOptions(c)
	return overlay, opts, err
}

// cloneOverlay clones the config repo and checks the overlay exists.
func (r *runner) cloneOverlay(ctx context.Context, opts configrepo.Options, overlay, envName string) (*configrepo.Repo, error) {
	repo, err := r.clone(ctx, opts)
	if err != nil {
		return nil, err
	}
	if err := checkOverlay(repo.Dir(), overlay, envName); err != nil {
		repo.Close()
		return nil, err
	}
	return repo, nil
}

// envApplier binds the config-repo and cluster flags (all of them before anything is
// contacted), then clones the config repo, for commands that work on an environment as the
// repo has it, and decides who applies it (handOff). The caller closes repo.
func (r *runner) envApplier(ctx context.Context, c *cli.Context, envName string) (ap *applier, repo *configrepo.Repo, overlay string, err error) {
	overlay, opts, err := r.bindCheckout(c, envName)
	if err != nil {
		return nil, nil, "", err
	}
	if ap, err = r.newApplier(ctx, c, envName); err != nil {
		return nil, nil, "", err
	}
	if repo, err = r.cloneOverlay(ctx, opts, overlay, envName); err != nil {
		return nil, nil, "", err
	}
	if err := ap.handOff(repo, envName, overlay); err != nil {
		repo.Close()
		return nil, nil, "", err
	}
	return ap, repo, overlay, nil
}

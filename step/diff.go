// diff.go owns `deliver diff`: what differs between the config repo and the cluster, as a
// server-side dry run, or through a GitOps engine as its state and the commits it has not
// applied.

package step

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/engine"
)

func (r *runner) diffCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv), Usage: "environment to compare"},
	}
	flags = append(flags, configRepoFlags()...)
	flags = append(flags, clusterFlags()...)
	return &cli.Command{
		Name:   "diff",
		Usage:  "show what differs between the config repo and the live cluster (server-side dry run; through Flux: the Kustomization's state and the commits it has not applied); exit 0 when nothing, 1 on drift",
		Flags:  flags,
		Action: r.withReporterQuiet(r.diff),
	}
}

func (r *runner) diff(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	envName := c.String(flagEnv)
	out := ci.Outcome{Command: "diff", Environment: envName}
	ap, repo, overlay, err := r.envApplier(ctx, c, envName)
	if err != nil {
		return out, err
	}
	defer repo.Close()
	if ap.engine != nil {
		return out, r.engineDiff(ctx, ap, repo, envName, &out)
	}
	root := repo.Dir()
	objs, ns, err := ap.objects(root, overlay, nil)
	if err != nil {
		return out, err
	}
	end := r.rep.Phase("diff", fmt.Sprintf("comparing %d object(s) with the cluster (server-side dry run)", len(objs)))
	// Fields another manager took over (kubectl scale, kubectl edit) are drift too: compare as
	// if deliver took them back.
	opts := ap.applyOptions(ns, true)
	opts.ForceConflicts, opts.KeepForeignReplicas = true, false
	dctx, cancel := context.WithTimeout(ctx, ap.timeout)
	diffs, err := ap.client.Diff(dctx, objs, opts)
	err = ap.deadline(ctx, dctx, "the diff", err)
	cancel()
	if err != nil {
		end(err)
		return out, err
	}
	end(nil)
	for _, d := range diffs {
		fmt.Fprint(r.stdout, d.String())
	}
	if len(diffs) > 0 {
		out.Changed = true
		return out, exitCodeError{code: ExitFailure, err: fmt.Errorf("environment %s: %d object(s) differ from the config repo", envName, len(diffs))}
	}
	r.rep.Logf("the cluster matches the config repo")
	return out, nil
}

// engineDiff is `deliver diff` through an engine: its state, and whether it applied the
// branch's tip; what is not applied yet is listed, and makes the command exit 1.
func (r *runner) engineDiff(ctx context.Context, ap *applier, repo *configrepo.Repo, envName string, out *ci.Outcome) error {
	end := r.rep.Phase("diff", "reading "+ap.engine.String())
	cctx, cancel := context.WithTimeout(ctx, ap.timeout)
	st, err := ap.engine.Check(cctx)
	if errors.Is(err, engine.ErrSuspended) {
		err = nil // shown below
	}
	err = ap.deadline(ctx, cctx, "reading "+ap.engine.String(), err)
	cancel()
	if err != nil {
		end(err)
		return err
	}
	tip, err := repo.Head()
	if err != nil {
		end(err)
		return err
	}
	applied := false
	if st.Applied != "" {
		if applied, err = repo.Contains(ctx, st.Applied, tip); err != nil {
			end(err)
			return err
		}
	}
	var pending []configrepo.Commit
	if !applied {
		if pending, err = notApplied(ctx, repo, st.Applied); err != nil {
			end(err)
			return err
		}
	}
	end(nil)
	writeEngineState(r.stdout, st, repo.Branch(), tip, applied, pending)
	if applied && st.Ready == "True" {
		r.rep.Logf("%s applied the branch's tip %s", st.Object, short(tip))
		return nil
	}
	out.Changed = true
	what := fmt.Sprintf("%d commit(s)", len(pending))
	if len(pending) == maxPending {
		what = fmt.Sprintf("at least %d commits", maxPending)
	}
	if applied {
		return exitCodeError{code: ExitFailure, err: fmt.Errorf("environment %s: %s applied the branch's tip %s but is not Ready (%s %s: %s)", envName, st.Object, short(tip), orDash(st.Ready), st.Reason, st.Message)}
	}
	return exitCodeError{code: ExitFailure, err: fmt.Errorf("environment %s: %s has not applied the branch's tip %s yet: %s not applied", envName, st.Object, short(tip), what)}
}

// notApplied lists the commits of the branch from its tip back to applied (exclusive), newest
// first, along first parents, at most maxPending; with applied "" or on another line of
// history, the newest maxPending. The clone is deepened only as far as the list needs.
func notApplied(ctx context.Context, repo *configrepo.Repo, applied string) ([]configrepo.Commit, error) {
	var out []configrepo.Commit
	err := repo.History(ctx, func(c configrepo.Commit) bool {
		if c.Hash == applied {
			return false
		}
		out = append(out, c)
		return len(out) < maxPending
	})
	return out, err
}

// writeEngineState prints an engine object's state for `deliver diff`.
func writeEngineState(w io.Writer, st engine.State, branch, tip string, applied bool, pending []configrepo.Commit) {
	fmt.Fprintf(w, "# %s (builds %s from %s, %s branch %s)\n", st.Object, orDash(st.Path), st.Source, st.SourceURL, orDash(st.SourceBranch))
	if st.Suspended {
		fmt.Fprintf(w, "suspended: %s%s (Flux applies nothing until it is resumed)\n", st.SuspendedObject, by(st.SuspendedBy))
	} else {
		fmt.Fprintln(w, "suspended: no")
	}
	fmt.Fprintf(w, "ready: %s %s: %s\n", orDash(st.Ready), st.Reason, st.Message)
	fmt.Fprintf(w, "source fetched: %s", orDash(st.Fetched))
	if st.SourceReady != "" && st.SourceReady != "True" {
		fmt.Fprintf(w, " (Ready=%s %s: %s)", st.SourceReady, st.SourceReason, st.SourceMessage)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "last attempted: %s\n", orDash(st.Attempted))
	fmt.Fprintf(w, "last applied: %s\n", orDash(st.Applied))
	state := "applied"
	if !applied {
		state = "not applied yet"
	}
	fmt.Fprintf(w, "branch %s: %s (%s)\n", branch, tip, state)
	for _, c := range st.Conditions {
		fmt.Fprintf(w, "condition %s=%s %s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	if len(pending) > 0 {
		fmt.Fprintln(w, "not applied yet, newest first:")
		for _, c := range pending {
			subject, _, _ := strings.Cut(c.Message, "\n")
			fmt.Fprintf(w, "  %s %s\n", short(c.Hash), subject)
		}
	}
}

func by(who string) string {
	if who == "" {
		return ""
	}
	return " by " + who
}

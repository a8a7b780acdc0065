package step

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
)

func (r *runner) applyCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv), Usage: "environment to apply"},
		&cli.StringFlag{Name: flagEnvURL, EnvVars: env(flagEnvURL), Usage: "the environment's URL, passed through to CI outputs"},
	}
	flags = append(flags, configRepoFlags()...)
	flags = append(flags, clusterFlags()...)
	return &cli.Command{
		Name:   "apply",
		Usage:  "apply an environment exactly as the config repo has it, and wait (re-sync after drift or a wiped cluster)",
		Flags:  flags,
		Action: r.withReporter(r.applyEnv),
	}
}

func (r *runner) diffCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv), Usage: "environment to compare"},
	}
	flags = append(flags, configRepoFlags()...)
	flags = append(flags, clusterFlags()...)
	return &cli.Command{
		Name:   "diff",
		Usage:  "show what differs between the config repo and the live cluster (server-side dry run); exit 0 when nothing, 1 on drift",
		Flags:  flags,
		Action: r.withReporterQuiet(r.diff),
	}
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
func (r *runner) cloneOverlay(ctx context.Context, opts configrepo.Options, overlay, envName string) (root string, cleanup func(), err error) {
	repo, err := r.clone(ctx, opts)
	if err != nil {
		return "", nil, err
	}
	if err := checkOverlay(repo.Dir(), overlay, envName); err != nil {
		repo.Close()
		return "", nil, err
	}
	return repo.Dir(), func() { repo.Close() }, nil
}

// envApplier binds the config-repo and cluster flags (all of them before anything is
// contacted), then clones the config repo, for commands that work on an environment as the
// repo has it.
func (r *runner) envApplier(ctx context.Context, c *cli.Context, envName string) (ap *applier, root, overlay string, cleanup func(), err error) {
	overlay, opts, err := r.bindCheckout(c, envName)
	if err != nil {
		return nil, "", "", nil, err
	}
	if ap, err = r.newApplier(ctx, c, envName); err != nil {
		return nil, "", "", nil, err
	}
	root, cleanup, err = r.cloneOverlay(ctx, opts, overlay, envName)
	return ap, root, overlay, cleanup, err
}

func (r *runner) applyEnv(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	envName := c.String(flagEnv)
	out := ci.Outcome{Command: "apply", Environment: envName}
	var err error
	if out.URL, err = envURL(c); err != nil {
		return out, err
	}
	ap, root, overlay, cleanup, err := r.envApplier(ctx, c, envName)
	if err != nil {
		return out, err
	}
	defer cleanup()
	return out, ap.run(ctx, root, overlay, nil, &out)
}

func (r *runner) diff(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	envName := c.String(flagEnv)
	out := ci.Outcome{Command: "diff", Environment: envName}
	ap, root, overlay, cleanup, err := r.envApplier(ctx, c, envName)
	if err != nil {
		return out, err
	}
	defer cleanup()
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

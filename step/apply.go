// apply.go owns `deliver apply`: re-apply an environment exactly as the config repo has it
// (directly, or by asking the GitOps engine to apply it again), and wait.

package step

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
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
		Usage:  "apply an environment exactly as the config repo has it, and wait (re-sync after drift or a wiped cluster; through Flux: ask Flux to apply it again now)",
		Flags:  flags,
		Action: r.withReporter(r.applyEnv),
	}
}

func (r *runner) applyEnv(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	envName := c.String(flagEnv)
	out := ci.Outcome{Command: "apply", Environment: envName}
	var err error
	if out.URL, err = envURL(c); err != nil {
		return out, err
	}
	ap, repo, overlay, err := r.envApplier(ctx, c, envName)
	if err != nil {
		return out, err
	}
	defer repo.Close()
	if ap.engine == nil {
		return out, ap.run(ctx, repo.Dir(), overlay, nil, &out)
	}
	// Through Flux: ask it to apply the branch's tip again (drift included) and wait.
	if err := ap.check(ctx); err != nil {
		return out, err
	}
	tip, err := repo.Head()
	if err != nil {
		return out, err
	}
	out.CommitSHA = tip
	return out, ap.sync(ctx, repo, tip, nil, true, &out)
}

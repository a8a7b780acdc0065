// lock.go owns `deliver lock` and `deliver unlock`: the lock entries in deliver.yaml.

package step

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/policy"
	"github.com/deliverhq/deliver/step/release"
)

func (r *runner) lockCommands() []*cli.Command {
	flags := func(withReason bool) []cli.Flag {
		f := []cli.Flag{
			&cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv), Usage: "environment"},
			&cli.StringFlag{Name: flagImage, EnvVars: env(flagImage), Usage: "image to lock (the name the manifests use)"},
		}
		if withReason {
			f = append(f, &cli.StringFlag{Name: flagReason, EnvVars: env(flagReason), Usage: "why (shown to every refused deploy)"})
		}
		return append(f, configRepoFlags()...)
	}
	return []*cli.Command{
		{
			Name:   "lock",
			Usage:  "pin an image in an environment: every deploy of it is refused until unlock (a manual run may --force)",
			Flags:  flags(true),
			Action: r.withReporter(func(ctx context.Context, c *cli.Context) (ci.Outcome, error) { return r.lock(ctx, c, true) }),
		},
		{
			Name:   "unlock",
			Usage:  "remove a lock",
			Flags:  flags(false),
			Action: r.withReporter(func(ctx context.Context, c *cli.Context) (ci.Outcome, error) { return r.lock(ctx, c, false) }),
		},
	}
}

// lock commits a lock (or its removal) to the policy file, with the same retry-on-conflict push.
func (r *runner) lock(ctx context.Context, c *cli.Context, lock bool) (ci.Outcome, error) {
	envName, image := c.String(flagEnv), c.String(flagImage)
	action := release.ActionUnlock
	if lock {
		action = release.ActionLock
	}
	out := ci.Outcome{Command: action, Environment: envName}
	if err := validateEnvName(envName); err != nil {
		return out, usage(err)
	}
	if image == "" || strings.ContainsAny(image, "=:@ \n\t") {
		return out, usage(fmt.Errorf("--%s %q: give the image name the manifests use (e.g. web)", flagImage, image))
	}
	opts, err := r.configRepoOptions(c)
	if err != nil {
		return out, err
	}
	trigger, event, err := r.trigger(c)
	if err != nil {
		return out, err
	}
	// A lock may land other pipelines' queued changes; it has no registry client, so a change
	// whose downgrade guard needs one is left to its owner.
	opts.Replay = r.replayer(nil, nil)
	repo, err := r.clone(ctx, opts)
	if err != nil {
		return out, err
	}
	defer repo.Close()
	author := r.author(c)
	rec := release.Record{
		Action: action, Environment: envName, Images: []release.ImageChange{{Name: image}}, Trigger: string(trigger), Event: event,
		SourceRepo: r.ci.SourceRepo, SourceCommit: r.ci.Commit, Pipeline: r.ci.PipelineURL, Actor: firstNonEmpty(r.ci.Actor, author.Name),
		Reason: c.String(flagReason),
	}
	res, err := r.pushChange(ctx, repo, c, configrepo.Change{Request: lockRequestTrailers(), Edit: func(ctx context.Context, dir string) (string, []string, error) {
		var changed bool
		var err error
		if lock {
			changed, err = policy.SetLock(dir, policy.Lock{Environment: envName, Image: image, Reason: rec.Reason, By: rec.Actor, At: time.Now().UTC().Truncate(time.Second)})
		} else {
			changed, err = policy.RemoveLock(dir, envName, image)
		}
		paths := []string{filepath.ToSlash(policy.FileName)}
		if err != nil {
			return "", paths, usage(err)
		}
		if !changed {
			return "", nil, nil
		}
		return rec.Message(), paths, nil
	}})
	out.Changed, out.CommitSHA = res.Changed, res.Commit
	if err != nil {
		return out, err
	}
	if !res.Changed {
		if lock {
			r.rep.Logf("%s was already locked in %s", image, envName)
		} else {
			r.rep.Logf("%s was not locked in %s", image, envName)
		}
	}
	return out, nil
}

package step

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/registry"
	"github.com/deliverhq/deliver/step/release"
)

func (r *runner) deployCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv), Usage: "environment to deploy to (its overlay is --path-template with {env} replaced)"},
		&cli.StringSliceFlag{Name: flagImage, EnvVars: env(flagImage), Usage: "image to set, NAME=REPOSITORY:TAG[@DIGEST] where NAME is the image as the manifests use it, or REPOSITORY:TAG (repeatable; DELIVER_IMAGE takes a comma- or newline-separated list)"},
		&cli.BoolFlag{Name: flagDigestPin, EnvVars: env(flagDigestPin), Value: true, Usage: "pin the digest the tag points to now (newTag and digest both set)"},
		&cli.BoolFlag{Name: flagNoApply, EnvVars: env(flagNoApply), Usage: "update the config repo only; do not apply to the cluster"},
		&cli.BoolFlag{Name: flagDryRun, EnvVars: env(flagDryRun), Usage: "push nothing and apply nothing: show the overlay diff and what the cluster would change"},
		&cli.StringFlag{Name: flagEnvURL, EnvVars: env(flagEnvURL), Usage: "the environment's URL, passed through to CI outputs"},
	}
	flags = append(flags, releaseFlags()...)
	flags = append(flags, configRepoFlags()...)
	flags = append(flags, registryFlags()...)
	flags = append(flags, clusterFlags()...)
	return &cli.Command{
		Name:      "deploy",
		Usage:     "verify images, pin them in an environment's overlay, commit and push, apply and wait",
		ArgsUsage: " ",
		Flags:     flags,
		Action:    r.withReporter(r.deploy),
	}
}

// imageSpec is one --image: the override to set and the reference to verify.
type imageSpec struct {
	image types.Image // Name, NewName, NewTag, Digest as asked
	ref   string      // the reference to verify: repository[:tag][@digest]
}

// parseImageSpecs parses --image values for commands that set concrete images.
func parseImageSpecs(values []string) ([]imageSpec, error) {
	args := splitList(values)
	if len(args) == 0 {
		return nil, usage(fmt.Errorf("--%s: %w", flagImage, errNoImages))
	}
	seen := map[string]bool{}
	var specs []imageSpec
	for _, a := range args {
		img, err := kustomize.ParseImageArg(a)
		if err != nil {
			return nil, usage(fmt.Errorf("--%s %q: %w", flagImage, a, err))
		}
		if img.NewName == "*" || img.NewTag == "*" || img.Digest == "*" {
			return nil, usage(fmt.Errorf("--%s %q: \"*\" (keep) is for set-image; deploy needs the concrete image to verify", flagImage, a))
		}
		if img.NewTag == "" && img.Digest == "" {
			return nil, usage(fmt.Errorf("--%s %q: needs a tag or a digest", flagImage, a))
		}
		if seen[img.Name] {
			return nil, usage(fmt.Errorf("--%s: image %q given twice", flagImage, img.Name))
		}
		seen[img.Name] = true
		repo := img.NewName
		if repo == "" {
			repo = img.Name
		}
		ref := repo
		if img.NewTag != "" {
			ref += ":" + img.NewTag
		}
		if img.Digest != "" {
			ref += "@" + img.Digest
		}
		specs = append(specs, imageSpec{image: img, ref: ref})
	}
	return specs, nil
}

// verifyImages confirms every image exists and returns the overrides to write (digest-pinned
// when pin is set) in the order given.
func (r *runner) verifyImages(ctx context.Context, reg *registry.Client, specs []imageSpec, pin bool) ([]types.Image, error) {
	end := r.rep.Phase("verify", fmt.Sprintf("checking %d image(s) in their registries", len(specs)))
	out := make([]types.Image, 0, len(specs))
	for _, s := range specs {
		res, err := reg.Resolve(ctx, s.ref)
		if err != nil {
			end(err)
			return nil, err
		}
		img := s.image
		if pin {
			img.Digest = res.Digest
		}
		r.rep.Logf("%s: %s -> %s", img.Name, s.ref, res.Digest)
		out = append(out, img)
	}
	end(nil)
	return out, nil
}

// editResult describes what one run of an overlay edit changed.
type editResult struct {
	changes []release.ImageChange
	path    string // kustomization file, relative to the repo root
	// previous holds the overrides as they were before the edit, by image name.
	previous map[string]types.Image
	// rendered is the edited overlay's build, reused for the apply (nil when nothing changed).
	rendered resmap.ResMap
}

// overlayDir is the overlay's directory in the clone at root.
func overlayDir(root, overlay string) string {
	return filepath.Join(root, filepath.FromSlash(overlay))
}

// setOverlayImages edits the overlay at root/overlay, proves it still renders and returns
// what changed (nothing when the overlay already held the images).
func setOverlayImages(root, overlay string, images []types.Image) (editResult, error) {
	res, err := setOverlayImagesIn(root, overlay, images)
	return res, inRepo(root, err)
}

func setOverlayImagesIn(root, overlay string, images []types.Image) (editResult, error) {
	dir := overlayDir(root, overlay)
	file, before, err := kustomize.ReadImages(dir)
	if err != nil {
		return editResult{}, err
	}
	prev := map[string]types.Image{}
	for _, img := range before {
		prev[img.Name] = img
	}
	changed, err := kustomize.SetImages(dir, images)
	if err != nil {
		return editResult{}, err
	}
	rel, err := filepath.Rel(root, file)
	if err != nil {
		return editResult{}, fmt.Errorf("locating %s in the repo: %w", file, err)
	}
	res := editResult{path: filepath.ToSlash(rel), previous: prev}
	if !changed {
		return res, nil
	}
	rendered, err := kustomize.Build(root, overlay)
	if err != nil {
		return editResult{}, fmt.Errorf("the edited overlay no longer renders: %w", err)
	}
	res.rendered = rendered
	_, after, err := kustomize.ReadImages(dir)
	if err != nil {
		return editResult{}, err
	}
	for _, img := range after {
		p, had := prev[img.Name]
		from := ""
		if had {
			from = kustomize.FormatImage(p)
			if from == kustomize.FormatImage(img) {
				continue
			}
		}
		res.changes = append(res.changes, release.ImageChange{Name: img.Name, From: from, To: kustomize.FormatImage(img)})
	}
	sort.SliceStable(res.changes, func(i, j int) bool {
		return indexOf(images, res.changes[i].Name) < indexOf(images, res.changes[j].Name)
	})
	return res, nil
}

func indexOf(images []types.Image, name string) int {
	for i, img := range images {
		if img.Name == name {
			return i
		}
	}
	return len(images)
}

// checkOverlay gives a clear error when the environment has no overlay in the repo.
func checkOverlay(root, overlay, envName string) error {
	dir := filepath.Join(root, filepath.FromSlash(overlay))
	if _, err := kustomize.FindKustomization(dir); err != nil {
		err = inRepo(root, err)
		if errors.Is(err, kustomize.ErrNoKustomization) {
			hint := ""
			if entries, rerr := os.ReadDir(filepath.Dir(dir)); rerr == nil {
				var names []string
				for _, e := range entries {
					if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
						names = append(names, e.Name())
					}
				}
				if len(names) > 0 {
					hint = fmt.Sprintf(" (%s has: %s)", filepath.ToSlash(filepath.Dir(overlay)), strings.Join(names, ", "))
				}
			}
			return usage(fmt.Errorf("environment %q: no overlay at %s in the config repo%s: %w", envName, overlay, hint, err))
		}
		return err
	}
	return nil
}

// deploy is `deliver deploy`.
func (r *runner) deploy(ctx context.Context, c *cli.Context) (ci.Outcome, error) {
	envName := c.String(flagEnv)
	out := ci.Outcome{Command: "deploy", Environment: envName, URL: c.String(flagEnvURL)}
	if c.NArg() > 0 {
		return out, usage(fmt.Errorf("deploy takes no arguments (got %q); images go in --%s", c.Args().First(), flagImage))
	}
	if err := validateEnvName(envName); err != nil {
		return out, usage(err)
	}
	overlay, err := overlayPath(c.String(flagPathTemplate), envName)
	if err != nil {
		return out, usage(err)
	}
	specs, err := parseImageSpecs(c.StringSlice(flagImage))
	if err != nil {
		return out, err
	}
	d, err := r.bindChange(ctx, c, envName)
	if err != nil {
		return out, err
	}
	r.rep.Logf("environment %s, overlay %s, trigger %s (%s)", envName, overlay, d.trigger, d.event)

	images, err := r.verifyImages(ctx, d.reg, specs, c.Bool(flagDigestPin))
	if err != nil {
		return out, err
	}
	for _, img := range images {
		out.Images = append(out.Images, img.Name+"="+kustomize.FormatImage(img))
	}
	if len(images) > 0 {
		out.ImageDigest = images[0].Digest
	}

	repo, err := r.clone(ctx, d.repoOpts)
	if err != nil {
		return out, err
	}
	defer repo.Close()
	if err := checkOverlay(repo.Dir(), overlay, envName); err != nil {
		return out, err
	}

	if c.Bool(flagDryRun) {
		return r.dryRun(ctx, repo, overlay, envName, images, d.ap, out)
	}

	return r.changeImages(ctx, c, repo, d.reg, d.ap, changeRequest{
		action: release.ActionDeploy, envName: envName, overlay: overlay, images: images,
		trigger: d.trigger, event: d.event, force: c.Bool(flagForce), reason: c.String(flagReason),
		onFailure: c.String(flagOnFailure),
	}, out)
}

// clone runs the clone phase.
func (r *runner) clone(ctx context.Context, opts configrepo.Options) (*configrepo.Repo, error) {
	end := r.rep.Phase("clone", fmt.Sprintf("%s (branch %s, depth 1)", opts.URL, opts.Branch))
	repo, err := configrepo.Clone(ctx, opts)
	if err != nil {
		end(err)
		return nil, err
	}
	if head, herr := repo.Head(); herr == nil {
		r.rep.Logf("at %s", short(head.String()))
	}
	end(nil)
	return repo, nil
}

// push runs the commit-and-push phase.
func (r *runner) push(ctx context.Context, repo *configrepo.Repo, c *cli.Context, edit configrepo.Edit) (configrepo.Result, error) {
	end := r.rep.Phase("push", "commit and push, re-applying the edit on the newest tip if another pipeline pushed first")
	res, err := repo.Update(ctx, r.author(c), edit)
	if err != nil {
		end(err)
		return res, err
	}
	if res.Changed {
		r.rep.Logf("pushed %s on %s after %d attempt(s)", short(res.Commit.String()), short(res.Parent.String()), res.Attempts)
	} else {
		r.rep.Logf("already up to date at %s: nothing to commit", short(res.Commit.String()))
	}
	end(nil)
	return res, nil
}

// dryRun shows what deploy would do: the overlay diff and the cluster's server-side dry run.
func (r *runner) dryRun(ctx context.Context, repo *configrepo.Repo, overlay, envName string, images []types.Image, ap *applier, out ci.Outcome) (ci.Outcome, error) {
	end := r.rep.Phase("edit", "dry run: editing the overlay in the clone only")
	file, err := kustomize.FindKustomization(filepath.Join(repo.Dir(), filepath.FromSlash(overlay)))
	if err != nil {
		end(err)
		return out, err
	}
	before, err := os.ReadFile(file)
	if err != nil {
		end(err)
		return out, fmt.Errorf("reading %s: %w", file, err)
	}
	er, err := setOverlayImages(repo.Dir(), overlay, images)
	if err != nil {
		end(err)
		return out, err
	}
	after, err := os.ReadFile(file)
	if err != nil {
		end(err)
		return out, fmt.Errorf("reading %s: %w", file, err)
	}
	end(nil)
	out.Changed = len(er.changes) > 0
	if out.Changed {
		diff, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(string(before)), B: difflib.SplitLines(string(after)),
			FromFile: "a/" + er.path, ToFile: "b/" + er.path, Context: 3,
		})
		fmt.Fprint(r.stdout, diff)
	} else {
		fmt.Fprintf(r.stdout, "# %s already holds these images: no commit would be made\n", er.path)
	}
	if ap != nil {
		if err := ap.dryRun(ctx, repo.Dir(), overlay, er.rendered, &out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// withReporter wraps a command: it chooses the reporter, runs the command, prints the one-line
// result on stdout and hands the outcome to the reporter.
func (r *runner) withReporter(cmd func(context.Context, *cli.Context) (ci.Outcome, error)) cli.ActionFunc {
	return r.wrap(cmd, true)
}

// withReporterQuiet is withReporter for commands whose stdout is their own (history, diff).
func (r *runner) withReporterQuiet(cmd func(context.Context, *cli.Context) (ci.Outcome, error)) cli.ActionFunc {
	return r.wrap(cmd, false)
}

func (r *runner) wrap(cmd func(context.Context, *cli.Context) (ci.Outcome, error), printResult bool) cli.ActionFunc {
	return func(c *cli.Context) error {
		r.registerSecrets(c)
		if r.rep == nil {
			r.rep = r.reporter(c)
		}
		out, err := cmd(c.Context, c)
		out.Phases = r.rep.Timings()
		out.Err = err
		if err == nil && printResult {
			fmt.Fprintln(r.stdout, resultLine(out))
		}
		if ferr := r.rep.Finish(out); ferr != nil && err == nil {
			return fmt.Errorf("writing CI outputs: %w", ferr)
		}
		return err
	}
}

// resultLine is the one-line result printed on stdout.
func resultLine(o ci.Outcome) string {
	parts := []string{o.Command}
	if o.Environment != "" {
		parts = append(parts, "env="+o.Environment)
	}
	parts = append(parts, fmt.Sprintf("changed=%t", o.Changed))
	if o.CommitSHA != "" && o.CommitSHA != strings.Repeat("0", 40) {
		parts = append(parts, "commit="+o.CommitSHA)
	}
	parts = append(parts, o.Images...)
	if o.Rollout != "" {
		parts = append(parts, fmt.Sprintf("applied=%d", o.Applied))
		if o.Pruned > 0 {
			parts = append(parts, fmt.Sprintf("pruned=%d", o.Pruned))
		}
		parts = append(parts, "rollout="+o.Rollout)
	}
	return strings.Join(parts, " ")
}

// commitURL links a config commit when the repo is on a known forge (GitHub, GitLab and
// anything else that serves /-/commit/ or /commit/); plain git servers get no link.
func commitURL(repoURL, sha string) string {
	if sha == "" || !strings.HasPrefix(repoURL, "https://") {
		return ""
	}
	base := strings.TrimSuffix(strings.TrimSuffix(repoURL, "/"), ".git")
	switch {
	case strings.Contains(base, "github"):
		return base + "/commit/" + sha
	case strings.Contains(base, "gitlab"):
		return base + "/-/commit/" + sha
	}
	return ""
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// inRepo rewrites the path of a kustomization file error to be relative to the config repo's
// root (the clone lives in a temporary directory nobody cares about), for messages and CI
// annotations.
func inRepo(root string, err error) error {
	var fe *kustomize.FileError
	if errors.As(err, &fe) && filepath.IsAbs(fe.Path) {
		if rel, rerr := filepath.Rel(root, fe.Path); rerr == nil && !strings.HasPrefix(rel, "..") {
			fe.Path = filepath.ToSlash(rel)
		}
	}
	return err
}

// replay.go owns the replay of queued changes (group commit): the trailers a queued change
// carries and how this run lands another run's change.

package step

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/policy"
	"github.com/deliverhq/deliver/step/registry"
	"github.com/deliverhq/deliver/step/release"
)

// A change that waits in the config repo's queue (group commit, see configrepo's queue.go)
// carries, besides its release record, what another deliver run needs to re-apply it exactly
// as its own run would: these trailers, written only into the queued commit.
const (
	// trailerOverlay: the overlay the change edits (deploy, rollback, promote), as the owner's
	// --path-template made it.
	trailerOverlay = "Deliver-Overlay"
	// trailerSet: one image override the change sets, as a set-image argument
	// (NAME=NEWNAME:TAG@DIGEST, or NAME:TAG@DIGEST when the override keeps the name).
	trailerSet = "Deliver-Set"
	// trailerForce: --force was given (a manual run overriding locks).
	trailerForce = "Deliver-Force"
)

// changeRequestTrailers are the trailers that let another run re-apply req; "" when an image
// cannot be written as an argument that reads back the same (the change then stays out of
// the queue).
func changeRequestTrailers(req changeRequest) string {
	lines := []string{trailerOverlay + ": " + req.overlay}
	for _, img := range req.images {
		arg, ok := imageArg(img)
		if !ok {
			return ""
		}
		lines = append(lines, trailerSet+": "+arg)
	}
	if req.force {
		lines = append(lines, trailerForce+": true")
	}
	return strings.Join(lines, "\n")
}

// lockRequestTrailers are the trailers of a lock or unlock: its record says everything.
func lockRequestTrailers() string { return trailerQueuedLock + ": true" }

// trailerQueuedLock marks a queued lock or unlock (its record names the environment, the
// image, the reason and who locked it).
const trailerQueuedLock = "Deliver-Lock-Edit"

// imageArg writes img as the set-image argument that parses back to it.
func imageArg(img types.Image) (string, bool) {
	if img.TagSuffix != "" || (img.NewTag == "" && img.Digest == "") {
		return "", false
	}
	ref := ""
	if img.NewTag != "" {
		ref += ":" + img.NewTag
	}
	if img.Digest != "" {
		ref += "@" + img.Digest
	}
	arg := img.Name + ref
	if img.NewName != "" {
		arg = img.Name + "=" + img.NewName + ref
	}
	back, err := kustomize.ParseImageArg(arg)
	return arg, err == nil && back == img
}

// queuedChange is a queued change as its record and request trailers describe it.
type queuedChange struct {
	rec     release.Record
	overlay string
	images  []types.Image
	force   bool
	lock    bool
}

// errNotReplayable: a queued change this run cannot read; it stays queued for its owner.
var errNotReplayable = errors.New("cannot re-apply the queued change")

// parseQueued reads a queued change's message and checks it as the owner's flags were checked.
func parseQueued(msg string) (queuedChange, error) {
	rec, err := release.Parse(msg)
	if err != nil {
		return queuedChange{}, fmt.Errorf("%w: %v", errNotReplayable, err)
	}
	q := queuedChange{rec: rec}
	if err := validateEnvName(rec.Environment); err != nil {
		return q, fmt.Errorf("%w: %v", errNotReplayable, err)
	}
	block := strings.ReplaceAll(msg, "\r\n", "\n")
	block = strings.TrimRight(block, "\n")
	if i := strings.LastIndex(block, "\n\n"); i >= 0 {
		block = block[i+2:]
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(block, "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case trailerOverlay:
			q.overlay = v
		case trailerSet:
			img, err := kustomize.ParseImageArg(v)
			if err != nil || (img.NewTag == "" && img.Digest == "") || img.NewName == kustomize.Keep || img.NewTag == kustomize.Keep || img.Digest == kustomize.Keep || seen[img.Name] {
				return q, fmt.Errorf("%w: image %q", errNotReplayable, v)
			}
			seen[img.Name] = true
			q.images = append(q.images, img)
		case trailerForce:
			q.force = v == "true"
		case trailerQueuedLock:
			q.lock = v == "true"
		}
	}
	switch rec.Action {
	case release.ActionLock, release.ActionUnlock:
		if !q.lock || len(rec.Images) != 1 || rec.Images[0].Name == "" || strings.ContainsAny(rec.Images[0].Name, "=:@ \t") {
			return q, fmt.Errorf("%w: a %s that does not name one image", errNotReplayable, rec.Action)
		}
	case release.ActionDeploy, release.ActionRollback, release.ActionPromote:
		clean := path.Clean(q.overlay)
		if q.overlay == "" || clean != q.overlay || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return q, fmt.Errorf("%w: overlay %q", errNotReplayable, q.overlay)
		}
		if len(q.images) == 0 {
			return q, fmt.Errorf("%w: no image", errNotReplayable)
		}
		if _, ok := ci.ParseTrigger(rec.Trigger); !ok {
			return q, fmt.Errorf("%w: trigger %q", errNotReplayable, rec.Trigger)
		}
	default:
		return q, fmt.Errorf("%w: action %q", errNotReplayable, rec.Action)
	}
	return q, nil
}

// replayer re-applies other runs' queued changes when this run lands the queue: the same
// policy check, edit and render check their own runs make, on the tip they land on. A change
// refused by policy (exit 8) or by its overlay (exit 2) is refused with the message its run
// would have printed; anything else this run cannot judge (a registry it cannot read, an
// unknown change) stays queued for its owner.
func (r *runner) replayer(reg *registry.Client, ap *applier) configrepo.Replay {
	var guard *policy.DowngradeGuard
	if reg != nil {
		guard = r.newDowngradeGuard(reg, ap)
	}
	return func(ctx context.Context, dir string, change configrepo.Queued) (string, []string, error) {
		q, err := parseQueued(change.Message)
		if err != nil {
			return "", nil, err
		}
		var msg string
		var paths []string
		if q.lock {
			msg, paths, err = r.replayLock(dir, q, change.Author.When)
		} else {
			msg, paths, err = r.replayChange(ctx, dir, q, guard)
		}
		switch code := ExitCode(err); {
		case err == nil:
			r.rep.Logf("landing %s's change %s: %s", change.Author.Name, change.ID, strings.SplitN(msg, "\n", 2)[0])
			return msg, paths, nil
		case ctx.Err() == nil && (code == ExitPolicy || code == ExitUsage) && !errors.Is(err, errNotReplayable):
			return "", paths, &configrepo.Refusal{Code: code, Message: r.redactor.Error(err).Error()}
		default:
			return "", paths, err
		}
	}
}

// replayChange re-applies a deploy, rollback or promotion.
func (r *runner) replayChange(ctx context.Context, dir string, q queuedChange, guard *policy.DowngradeGuard) (string, []string, error) {
	trigger, _ := ci.ParseTrigger(q.rec.Trigger)
	// An environment that takes changes through pull requests only (since the change was
	// queued) gets none pushed to its branch.
	if mode, err := via(dir, changeRequest{envName: q.rec.Environment}); err != nil || mode == policy.ViaPullRequest {
		if err == nil {
			err = fmt.Errorf("%w: environment %s takes changes through pull requests only (%s: environments.%s.via: pull-request); run deliver again to open one",
				errPolicy, q.rec.Environment, policy.FileName, q.rec.Environment)
		}
		return "", nil, err
	}
	req := changeRequest{
		action: q.rec.Action, envName: q.rec.Environment, overlay: q.overlay, images: q.images,
		trigger: trigger, event: q.rec.Event, force: q.force, reason: q.rec.Reason,
	}
	// The owner checked the downgrade guard against the images its tip ran (the record's
	// Previous): where the tip still runs those, its check holds. Otherwise the guard must
	// read the registry, which this run may not be able to: then the change waits for its
	// owner rather than being judged by a guess.
	if trigger == ci.TriggerAutomated {
		same, err := runsPrevious(dir, q.overlay, q.rec)
		if err != nil {
			return "", nil, err
		}
		if same {
			guard = nil
		} else if guard == nil {
			guard = policy.NewDowngradeGuard(func(context.Context, string) (time.Time, error) {
				return time.Time{}, fmt.Errorf("%w: this run has no registry client to judge the downgrade guard", errNotReplayable)
			}, nil)
		}
	} else {
		guard = nil
	}
	base := release.Record{
		Action: q.rec.Action, Environment: q.rec.Environment, Trigger: q.rec.Trigger, Event: q.rec.Event,
		SourceRepo: q.rec.SourceRepo, SourceCommit: q.rec.SourceCommit, Pipeline: q.rec.Pipeline, Actor: q.rec.Actor,
		Reason: q.rec.Reason,
	}
	er, _, msg, paths, err := r.editChange(ctx, dir, req, base, guard, true, nil)
	if err == nil && len(paths) > 0 {
		err = checkEdit(&r.builds, dir, req, &er)
	}
	return msg, paths, err
}

// runsPrevious reports whether the overlay in dir sets every image of the record to what the
// record says it replaced (an image the record added is absent).
func runsPrevious(root, overlay string, rec release.Record) (bool, error) {
	current, err := kustomize.ReadOverlayImages(root, overlay)
	if err != nil {
		return false, err
	}
	now := map[string]string{}
	for _, img := range current {
		now[img.Name] = kustomize.FormatImage(img)
	}
	for _, ch := range rec.Images {
		if now[ch.Name] != ch.From {
			return false, nil
		}
	}
	return true, nil
}

// replayLock re-applies a lock or unlock; at is when its owner asked for it.
func (r *runner) replayLock(dir string, q queuedChange, at time.Time) (string, []string, error) {
	image := q.rec.Images[0].Name
	var changed bool
	var err error
	if q.rec.Action == release.ActionLock {
		changed, err = policy.SetLock(dir, policy.Lock{Environment: q.rec.Environment, Image: image, Reason: q.rec.Reason, By: q.rec.Actor, At: at.UTC().Truncate(time.Second)})
	} else {
		changed, err = policy.RemoveLock(dir, q.rec.Environment, image)
	}
	paths := []string{filepath.ToSlash(policy.FileName)}
	if err != nil {
		return "", paths, usage(err)
	}
	if !changed {
		return "", nil, nil
	}
	return q.rec.Message(), paths, nil
}

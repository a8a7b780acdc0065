package step

import (
	"context"
	"errors"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/cluster"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/engine"
	"github.com/deliverhq/deliver/step/registry"
)

// Exit codes, documented in README.md. CI systems can act on them (GitLab's
// allow_failure:exit_codes, a GitHub step's `if: failure()` with the code in the log).
const (
	ExitOK = 0
	// ExitFailure: a failure not classified below; also `deliver diff` finding drift.
	ExitFailure = 1
	// ExitUsage: bad input: flags, environment names, image references, overlays, YAML; an SSH
	// host the known_hosts given do not list (a key that differs is ExitAuth); a Flux
	// Kustomization that does not exist, a cluster without Flux, a Flux setup deliver cannot
	// follow.
	ExitUsage = 2
	// ExitImageNotFound: the image (tag or digest) is not in its registry.
	ExitImageNotFound = 3
	// ExitAuth: a registry, the config repo or the cluster refused the credentials.
	ExitAuth = 4
	// ExitPush: the config repo could not be updated: unreachable, a hook or protected branch
	// refused the push, or every attempt lost the race.
	ExitPush = 5
	// ExitApply: the cluster could not be reached (also when checked before the push, which
	// then pushes nothing), or applying to it failed; through Flux, Flux did not fetch the
	// pushed commit in time (not reverted).
	ExitApply = 6
	// ExitRollout: the rollout did not become ready in time, or failed.
	ExitRollout = 7
	// ExitPolicy: the environment's policy refused the change (lock, manual-only, downgrade), or
	// the Flux Kustomization (or its source) that applies the environment is suspended.
	ExitPolicy = 8
	// ExitRegistry: the registry could not be reached or kept failing.
	ExitRegistry = 9
	// ExitReport: the command did its work (what it pushed stays pushed, what it applied stays
	// applied) but its CI outputs could not be written: GitHub's step outputs
	// (GITHUB_OUTPUT) or job summary (GITHUB_STEP_SUMMARY), GitLab's dotenv report, the JSON
	// report (--report). The message names the file.
	ExitReport = 10
	// ExitInterrupted: deliver was interrupted (SIGINT/SIGTERM) or its deadline passed.
	ExitInterrupted = 130
)

// usageError marks bad input.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usage wraps err as bad input (exit code 2).
func usage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// reportError marks a failure to write the CI outputs after the command's work was done
// (exit code 10).
type reportError struct{ err error }

func (e reportError) Error() string { return e.err.Error() }
func (e reportError) Unwrap() error { return e.err }

// exitCodeError lets a command choose its exit code explicitly (diff's drift).
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string { return e.err.Error() }
func (e exitCodeError) Unwrap() error { return e.err }

// ExitCode maps an error returned by the app to its documented exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ec exitCodeError
	var refusal *configrepo.Refusal
	var ue usageError
	var re reportError
	var fe *kustomize.FileError
	switch {
	case errors.As(err, &ec):
		return ec.code
	case errors.As(err, &refusal):
		// Another run refused this run's queued change, with the code this run would have had.
		return refusal.Code
	case errors.As(err, &re):
		return ExitReport
	case errors.Is(err, errPolicy), errors.Is(err, engine.ErrSuspended):
		return ExitPolicy
	case errors.Is(err, engine.ErrNotFound), errors.Is(err, engine.ErrUnsupported):
		return ExitUsage
	case errors.Is(err, engine.ErrNotFetched):
		return ExitApply
	case errors.Is(err, registry.ErrNotFound):
		return ExitImageNotFound
	case errors.Is(err, configrepo.ErrUnknownHost):
		return ExitUsage // the run lacks the host's key: configuration, not refused credentials
	case errors.Is(err, registry.ErrUnauthorized), errors.Is(err, configrepo.ErrAuth), errors.Is(err, cluster.ErrUnauthorized):
		return ExitAuth
	case errors.Is(err, registry.ErrUnreachable):
		return ExitRegistry
	case errors.Is(err, registry.ErrInvalidRef), errors.Is(err, kustomize.ErrInvalidImage), errors.Is(err, kustomize.ErrNoKustomization),
		errors.Is(err, kustomize.ErrOutsideRoot), errors.Is(err, kustomize.ErrRemoteResource), errors.Is(err, kustomize.ErrTooLarge),
		errors.As(err, &ue), errors.As(err, &fe), errors.Is(err, cluster.ErrInvalid):
		return ExitUsage
	case errors.Is(err, cluster.ErrRolloutFailed):
		return ExitRollout
	case errors.Is(err, cluster.ErrApply), errors.Is(err, cluster.ErrUnreachable):
		return ExitApply
	case errors.Is(err, configrepo.ErrUnreachable), errors.Is(err, configrepo.ErrRejected), errors.Is(err, configrepo.ErrConflict),
		errors.Is(err, configrepo.ErrNotFound):
		return ExitPush
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	}
	return ExitFailure
}

// errPolicy marks a refusal by the environment's policy (exit code 8).
var errPolicy = errors.New("refused by policy")

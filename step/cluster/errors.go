package cluster

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Sentinel errors. Errors returned by this package wrap one of them (test
// with errors.Is) together with the underlying cause, or wrap the context's
// error when the context ended.
var (
	// ErrApply means the cluster refused or failed a change for a reason
	// that is neither authorization, reachability nor an invalid object:
	// field conflicts, a terminating namespace, a foreign ApplySet parent,
	// a failed prune, a CRD that never became established.
	ErrApply = errors.New("apply failed")
	// ErrRolloutFailed means Wait gave up: an object failed or did not
	// become Current within the timeout.
	ErrRolloutFailed = errors.New("rollout failed")
	// ErrUnauthorized means the API server rejected the credentials (401)
	// or the request (403); the message names the verb and resource.
	ErrUnauthorized = errors.New("not authorized")
	// ErrUnreachable means the API server could not be reached or did not
	// answer: connection refused, timeouts, TLS failures, 503.
	ErrUnreachable = errors.New("cluster unreachable")
	// ErrInvalid means the input is unusable: an object the API server
	// rejects as invalid (400, 422), a kind it does not serve, or a
	// kubeconfig or context that cannot be used.
	ErrInvalid = errors.New("invalid")
)

// classify wraps err, returned by the API server or the transport while doing
// what, with the sentinel that describes it. Errors that already carry a
// sentinel are only wrapped with what; transport errors after ctx ended (or
// its deadline passed) wrap the context's error instead of a sentinel.
func classify(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) && expired(ctx) {
		// Requests fail when ctx ends, and client-go's rate limiter fails
		// them just before: report the context's error either way.
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		if errors.Is(err, cause) {
			return fmt.Errorf("%s: %w", what, err)
		}
		return fmt.Errorf("%s: %w: %w", what, cause, err)
	}
	for _, s := range []error{ErrApply, ErrRolloutFailed, ErrUnauthorized, ErrUnreachable, ErrInvalid} {
		if errors.Is(err, s) {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	return fmt.Errorf("%s: %w: %w", what, kindOf(err), err)
}

// kindOf returns the sentinel for an unclassified error.
func kindOf(err error) error {
	if meta.IsNoMatchError(err) {
		return ErrInvalid
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		switch {
		case apierrors.IsUnauthorized(err):
			return ErrUnauthorized
		case apierrors.IsForbidden(err):
			if hasCause(err, corev1.NamespaceTerminatingCause) {
				return ErrApply // "unable to create new content in namespace x because it is being terminated"
			}
			return ErrUnauthorized
		case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsUnsupportedMediaType(err):
			return ErrInvalid
		case apierrors.IsInternalError(err) && strings.Contains(err.Error(), "failed to create typed patch object"):
			// Server-side apply reports fields the schema does not declare
			// ("field not declared in schema") and wrongly typed values as
			// a 500 with this message.
			return ErrInvalid
		case apierrors.IsServiceUnavailable(err), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err),
			apierrors.IsTooManyRequests(err):
			return ErrUnreachable
		}
		return ErrApply
	}
	var (
		netErr     net.Error
		urlErr     *url.Error
		unknownCA  x509.UnknownAuthorityError
		hostnameEr x509.HostnameError
		invalidErr x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.ENETUNREACH), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr), errors.As(err, &urlErr),
		errors.As(err, &unknownCA), errors.As(err, &hostnameEr), errors.As(err, &invalidErr):
		return ErrUnreachable
	}
	return ErrApply
}

// hasCause reports whether err is an API status with a cause of type t.
func hasCause(err error, t metav1.CauseType) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || status.Status().Details == nil {
		return false
	}
	for _, c := range status.Status().Details.Causes {
		if c.Type == t {
			return true
		}
	}
	return false
}

// FieldConflict is one field of an applied object that another field manager
// owns.
type FieldConflict struct {
	// Manager is the name of the field manager that owns the field, e.g.
	// "kubectl" or "helm".
	Manager string
	// Field is the path of the field, e.g. ".spec.replicas".
	Field string
}

// ConflictError is returned by Apply when server-side apply without
// ForceConflicts would change fields that other field managers own. It wraps
// ErrApply and the API server's error.
type ConflictError struct {
	// Object is the object whose apply was refused.
	Object ObjectRef
	// Conflicts lists the contested fields, as reported by the API server.
	Conflicts []FieldConflict
	err       error
	// hint, if any, says more about a conflict on spec.replicas.
	hint string
}

// Error lists the contested fields and their managers and suggests
// --force-conflicts.
func (e *ConflictError) Error() string {
	parts := make([]string, 0, len(e.Conflicts))
	for _, c := range e.Conflicts {
		parts = append(parts, fmt.Sprintf("%s is owned by field manager %q", c.Field, c.Manager))
	}
	if len(parts) == 0 {
		parts = append(parts, e.err.Error())
	}
	msg := fmt.Sprintf("applying %s: %s: field conflict: %s; to take these fields over, rerun with --force-conflicts",
		e.Object, ErrApply, strings.Join(parts, ", "))
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

// Unwrap returns ErrApply and the API server's error.
func (e *ConflictError) Unwrap() []error { return []error{ErrApply, e.err} }

// conflictError turns an apply conflict into a *ConflictError; it returns nil
// if err is not a field-manager conflict.
func conflictError(ref ObjectRef, err error) *ConflictError {
	var status apierrors.APIStatus
	if !apierrors.IsConflict(err) || !errors.As(err, &status) {
		return nil
	}
	ce := &ConflictError{Object: ref, err: err}
	if d := status.Status().Details; d != nil {
		for _, c := range d.Causes {
			if c.Type != metav1.CauseTypeFieldManagerConflict {
				continue
			}
			ce.Conflicts = append(ce.Conflicts, FieldConflict{Manager: conflictManager(c.Message), Field: c.Field})
		}
	}
	if len(ce.Conflicts) == 0 {
		return nil
	}
	sort.SliceStable(ce.Conflicts, func(i, j int) bool { return ce.Conflicts[i].Field < ce.Conflicts[j].Field })
	return ce
}

// conflictManager extracts the manager's name from a conflict cause message
// of the form `conflict with "kubectl" using apps/v1`; it returns the rest of
// the message if it has another form.
func conflictManager(msg string) string {
	rest, ok := strings.CutPrefix(msg, "conflict with ")
	if !ok {
		return msg
	}
	if q, err := strconv.QuotedPrefix(rest); err == nil {
		if name, err := strconv.Unquote(q); err == nil {
			return name
		}
	}
	return rest
}

// Package release describes one change deliver makes to an environment (a deploy, rollback,
// promotion, lock or revert) as a Record, and writes it into, and reads it back from, the
// config-repo commit that made it. The commit's subject is for people
// ("deliver(staging): web 1.4.2 -> 1.4.3"); its git trailers (Deliver-Environment,
// Deliver-Image, Deliver-Previous, Deliver-Trigger, ...) make the history machine-readable, so
// history and rollback read the config repo and nothing else.
package release

import (
	"errors"
	"fmt"
	"strings"
)

// Actions a Record can describe.
const (
	ActionDeploy   = "deploy"
	ActionRollback = "rollback"
	ActionPromote  = "promote"
	ActionRevert   = "revert"
	ActionLock     = "lock"
	ActionUnlock   = "unlock"
)

// Trailer keys.
const (
	keyAction       = "Deliver-Action"
	keyEnvironment  = "Deliver-Environment"
	keyImage        = "Deliver-Image"
	keyPrevious     = "Deliver-Previous"
	keyTrigger      = "Deliver-Trigger"
	keyEvent        = "Deliver-Event"
	keySourceRepo   = "Deliver-Source-Repo"
	keySourceCommit = "Deliver-Source-Commit"
	keyPipeline     = "Deliver-Pipeline"
	keyActor        = "Deliver-Actor"
	keyForced       = "Deliver-Forced"
	keyReason       = "Deliver-Reason"
	keyReverts      = "Deliver-Reverts"
)

// ErrNotRecord is returned by Parse for a commit message without deliver trailers.
var ErrNotRecord = errors.New("not a deliver commit")

// ImageChange is one image override changed in an environment. From and To are image
// references as the manifests will use them (newName:tag@digest); From is empty when the
// override is new.
type ImageChange struct {
	Name, From, To string
}

// Record is one change to one environment.
type Record struct {
	Action      string
	Environment string
	Images      []ImageChange
	// Trigger is "automated" or "manual"; Event the CI's own word (push, web, workflow_dispatch, cli).
	Trigger, Event string
	// SourceRepo, SourceCommit and Pipeline link the change to the app pipeline that made it.
	SourceRepo, SourceCommit, Pipeline string
	Actor                              string
	// Forced is set when a manual run overrode a lock.
	Forced bool
	// Reason is free text: a lock's reason, why a revert happened.
	Reason string
	// Reverts is the config commit a revert undoes.
	Reverts string
}

// Subject is the one-line summary used as the commit subject.
func (r Record) Subject() string {
	var parts []string
	for _, c := range r.Images {
		to := ShortRef(c.To)
		if c.From == "" || ShortRef(c.From) == to {
			parts = append(parts, fmt.Sprintf("%s %s", c.Name, to))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s -> %s", c.Name, ShortRef(c.From), to))
		}
	}
	what := strings.Join(parts, ", ")
	switch r.Action {
	case ActionLock:
		return fmt.Sprintf("deliver(%s): lock %s", r.Environment, r.lockTargets())
	case ActionUnlock:
		return fmt.Sprintf("deliver(%s): unlock %s", r.Environment, r.lockTargets())
	case ActionRollback, ActionPromote, ActionRevert:
		return fmt.Sprintf("deliver(%s): %s %s", r.Environment, r.Action, what)
	}
	return fmt.Sprintf("deliver(%s): %s", r.Environment, what)
}

func (r Record) lockTargets() string {
	names := make([]string, 0, len(r.Images))
	for _, c := range r.Images {
		names = append(names, c.Name)
	}
	return strings.Join(names, ", ")
}

// Message renders the whole commit message: subject, a body linking the source, and trailers.
func (r Record) Message() string {
	var b strings.Builder
	b.WriteString(clean(r.Subject()))
	b.WriteString("\n\n")
	var body []string
	if r.Reason != "" {
		body = append(body, "Reason: "+clean(r.Reason))
	}
	if r.SourceRepo != "" {
		body = append(body, "Source: "+clean(r.SourceRepo))
	}
	if r.SourceCommit != "" {
		body = append(body, "Commit: "+clean(r.SourceCommit))
	}
	if r.Pipeline != "" {
		body = append(body, "Pipeline: "+clean(r.Pipeline))
	}
	if len(body) > 0 {
		b.WriteString(strings.Join(body, "\n"))
		b.WriteString("\n\n")
	}
	trailer := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, clean(v))
		}
	}
	trailer(keyAction, or(r.Action, ActionDeploy))
	trailer(keyEnvironment, r.Environment)
	for _, c := range r.Images {
		trailer(keyImage, c.Name+"="+c.To)
	}
	for _, c := range r.Images {
		if c.From != "" {
			trailer(keyPrevious, c.Name+"="+c.From)
		}
	}
	trailer(keyTrigger, r.Trigger)
	trailer(keyEvent, r.Event)
	trailer(keySourceRepo, r.SourceRepo)
	trailer(keySourceCommit, r.SourceCommit)
	trailer(keyPipeline, r.Pipeline)
	trailer(keyActor, r.Actor)
	if r.Forced {
		trailer(keyForced, "true")
	}
	trailer(keyReason, r.Reason)
	trailer(keyReverts, r.Reverts)
	return b.String()
}

// Parse reads a Record back from a commit message written by Message. Messages without a
// Deliver-Environment trailer return ErrNotRecord.
func Parse(msg string) (Record, error) {
	var r Record
	prev := map[string]string{}
	found := false
	for _, line := range strings.Split(trailerBlock(msg), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if !ok || !strings.HasPrefix(k, "Deliver-") {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case keyAction:
			r.Action = v
		case keyEnvironment:
			r.Environment, found = v, true
		case keyImage:
			name, ref, ok := strings.Cut(v, "=")
			if !ok {
				return Record{}, fmt.Errorf("parsing trailer %s %q: want NAME=REF", k, v)
			}
			r.Images = append(r.Images, ImageChange{Name: name, To: ref})
		case keyPrevious:
			name, ref, ok := strings.Cut(v, "=")
			if !ok {
				return Record{}, fmt.Errorf("parsing trailer %s %q: want NAME=REF", k, v)
			}
			prev[name] = ref
		case keyTrigger:
			r.Trigger = v
		case keyEvent:
			r.Event = v
		case keySourceRepo:
			r.SourceRepo = v
		case keySourceCommit:
			r.SourceCommit = v
		case keyPipeline:
			r.Pipeline = v
		case keyActor:
			r.Actor = v
		case keyForced:
			r.Forced = v == "true"
		case keyReason:
			r.Reason = v
		case keyReverts:
			r.Reverts = v
		}
	}
	if !found {
		return Record{}, ErrNotRecord
	}
	for i := range r.Images {
		r.Images[i].From = prev[r.Images[i].Name]
	}
	return r, nil
}

// trailerBlock returns the last paragraph of a commit message, where git keeps trailers.
func trailerBlock(msg string) string {
	msg = strings.TrimRight(strings.ReplaceAll(msg, "\r\n", "\n"), "\n")
	if i := strings.LastIndex(msg, "\n\n"); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// ShortRef shortens an image reference for people: the tag when there is one, else the first
// 12 hex digits of the digest.
func ShortRef(ref string) string {
	rest, digest, _ := strings.Cut(ref, "@")
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		return rest[i+1:]
	}
	if _, hex, ok := strings.Cut(digest, ":"); ok && len(hex) >= 12 {
		return hex[:12]
	}
	return ref
}

// clean keeps a value on one line: trailers and the subject must not be split or forged by a
// value that contains a newline.
func clean(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

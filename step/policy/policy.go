// Package policy reads and edits deliver.yaml, the file at the root of the config repo that
// says, per environment, whether automation may deploy there and whether it may go back to an
// older build, and which images are locked (pinned during an incident). It lives in the config
// repo so that the repo stays the one source of truth: a lock is a commit, and every deploy
// checks the policy of the very commit it builds on.
//
// The file is small and meant to be edited by hand:
//
//	# deliver policy
//	environments:
//	  staging:
//	    automated: true     # push pipelines may deploy (default true)
//	    downgrade: deny     # automation may not replace a newer build with an older one (default deny)
//	  production:
//	    automated: false    # only manual runs (Run pipeline, workflow_dispatch, a person at a shell)
//	locks:
//	  - environment: production
//	    image: web
//	    reason: incident 42
//	    by: Ada
//	    at: 2026-11-25T10:00:00Z
//
// A missing file means no rules: automation allowed, downgrades denied to automation, no locks.
// A file that does not parse, or holds unknown keys or values, is an error, never "no policy".
//
// The rule "downgrade: deny" is enforced by DowngradeGuard, which orders builds by their
// creation times and tags by CompareVersions; it reads creation times through a function the
// command passes, so this package talks to no registry.
package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FileName is the policy file's name at the root of the config repo.
const FileName = "deliver.yaml"

// maxSize bounds the policy file: it is a handful of lines.
const maxSize = 1 << 20

// ErrInvalid marks a policy file that cannot be used.
var ErrInvalid = errors.New("invalid policy file")

// Downgrade rules.
const (
	DowngradeDeny  = "deny"
	DowngradeAllow = "allow"
)

// Environment holds one environment's rules.
type Environment struct {
	// Automated: may automated runs deploy here? nil means the default, true.
	Automated *bool `yaml:"automated,omitempty"`
	// Downgrade: "deny" (default) refuses automated deploys of an older build; "allow" permits them.
	Downgrade string `yaml:"downgrade,omitempty"`
	// Via: how changes reach the environment's branch: "push" (default) commits on it directly;
	// "pull-request" pushes them to a branch of their own and opens a pull (merge) request, for
	// a protected branch.
	Via string `yaml:"via,omitempty"`
}

// Ways a change reaches an environment's branch (Environment.Via).
const (
	ViaPush        = "push"
	ViaPullRequest = "pull-request"
)

// Lock pins an image in an environment.
type Lock struct {
	Environment string    `yaml:"environment"`
	Image       string    `yaml:"image"`
	Reason      string    `yaml:"reason,omitempty"`
	By          string    `yaml:"by,omitempty"`
	At          time.Time `yaml:"at,omitempty"`
}

// Policy is the parsed file.
type Policy struct {
	Environments map[string]Environment `yaml:"environments,omitempty"`
	Locks        []Lock                 `yaml:"locks,omitempty"`
}

// Load reads the policy of the repo at root. A missing file is the empty policy.
func Load(root string) (*Policy, error) {
	path := filepath.Join(root, FileName)
	data, err := readLimited(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Policy{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalid, FileName, err)
	}
	return Parse(data)
}

// Parse parses policy file content strictly: unknown keys, wrong types and bad values are errors
// naming the line.
func Parse(data []byte) (*Policy, error) {
	var p Policy
	if len(bytes.TrimSpace(data)) == 0 {
		return &p, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); errors.Is(err, io.EOF) {
		return &p, nil // only comments
	} else if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalid, FileName, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("%w %s: more than one YAML document", ErrInvalid, FileName)
	}
	for name, e := range p.Environments {
		switch e.Downgrade {
		case "", DowngradeDeny, DowngradeAllow:
		default:
			return nil, fmt.Errorf("%w %s: environments.%s.downgrade: %q is neither deny nor allow", ErrInvalid, FileName, name, e.Downgrade)
		}
		switch e.Via {
		case "", ViaPush, ViaPullRequest:
		default:
			return nil, fmt.Errorf("%w %s: environments.%s.via: %q is neither push nor pull-request", ErrInvalid, FileName, name, e.Via)
		}
	}
	for i, l := range p.Locks {
		if l.Environment == "" || l.Image == "" {
			return nil, fmt.Errorf("%w %s: locks[%d]: environment and image are required", ErrInvalid, FileName, i)
		}
	}
	return &p, nil
}

// AutomatedAllowed reports whether automated runs may deploy to env.
func (p *Policy) AutomatedAllowed(env string) bool {
	e, ok := p.Environments[env]
	if !ok || e.Automated == nil {
		return true
	}
	return *e.Automated
}

// Via says how changes reach env's branch: ViaPush (the default) or ViaPullRequest.
func (p *Policy) Via(env string) string {
	if v := p.Environments[env].Via; v != "" {
		return v
	}
	return ViaPush
}

// DowngradeAllowed reports whether automated runs may deploy an older build to env.
func (p *Policy) DowngradeAllowed(env string) bool {
	return p.Environments[env].Downgrade == DowngradeAllow
}

// LockFor returns the lock on image in env, if any.
func (p *Policy) LockFor(env, image string) (Lock, bool) {
	for _, l := range p.Locks {
		if l.Environment == env && l.Image == image {
			return l, true
		}
	}
	return Lock{}, false
}

// Describe renders a lock for messages: "locked by Ada at 2026-11-25T10:00:00Z: incident 42".
func (l Lock) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is locked in %s", l.Image, l.Environment)
	if l.By != "" {
		fmt.Fprintf(&b, " by %s", l.By)
	}
	if !l.At.IsZero() {
		fmt.Fprintf(&b, " since %s", l.At.UTC().Format(time.RFC3339))
	}
	if l.Reason != "" {
		fmt.Fprintf(&b, " (%s)", l.Reason)
	}
	return b.String()
}

func readLimited(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > maxSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxSize)
	}
	return os.ReadFile(path)
}

package configrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/pktline"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// TestClassify checks that the transport's failures map to the sentinels the exit codes hang
// on, through the errors' types, with their wrapping kept or not.
func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"branch missing from the advertisement", fmt.Errorf("fetching: %w", fmt.Errorf("%w %s", errBranchMissing, "refs/heads/main")), ErrNotFound},
		{"repository not found", transport.ErrRepositoryNotFound, ErrNotFound},
		{"authentication required", transport.ErrAuthenticationRequired, ErrAuth},
		{"deadline", context.DeadlineExceeded, ErrUnreachable},
		{"a message that only reads like a missing ref", errors.New("remote: couldn't find remote ref, maybe"), nil},
	}
	for _, tt := range tests {
		got := classify("fetching x", tt.err)
		for _, s := range []error{ErrNotFound, ErrAuth, ErrUnreachable} {
			if errors.Is(got, s) != (s == tt.want) {
				t.Errorf("%s: classify = %v; errors.Is(%v) = %v", tt.name, got, s, errors.Is(got, s))
			}
		}
	}
}

// TestIsNotOurRef checks the one text match left: the server's refusal of a want it no
// longer advertises, however go-git passes it on.
func TestIsNotOurRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{&pktline.ErrorLine{Text: "upload-pack: not our ref 4b825dc642cb6eb9a060e54bf8d69288fbee4904"}, true},
		{fmt.Errorf("fetching: %w", &pktline.ErrorLine{Text: "upload-pack: not our ref 4b825dc6"}), true},
		{errors.New("unexpected client error: ERR upload-pack: not our ref 4b825dc6"), true},
		{&pktline.ErrorLine{Text: "access denied"}, false},
		{transport.ErrRepositoryNotFound, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := isNotOurRef(tt.err); got != tt.want {
			t.Errorf("isNotOurRef(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestValidateBranch: the branch names git refuses, and a leading "-", are refused.
func TestValidateBranch(t *testing.T) {
	t.Parallel()
	for name, ok := range map[string]bool{
		"main": true, "release/1.2": true, "env-staging": true,
		"a..b": false, "has space": false, "x~1": false, "a:b": false, "q?": false, "st*r": false, "[x": false, "back\\slash": false,
		"a@{b": false, "-rf": false, ".hidden": false, "x.lock": false, "line\nbreak": false,
	} {
		if err := ValidateBranch(name); (err == nil) != ok {
			t.Errorf("ValidateBranch(%q) = %v, want ok %t", name, err, ok)
		}
	}
}

// TestParseID: Contains takes full hex commit ids and nothing else.
func TestParseID(t *testing.T) {
	t.Parallel()
	good := "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
	if h, err := parseID(good); err != nil || h.String() != good {
		t.Errorf("parseID(%s) = %v, %v", good, h, err)
	}
	for _, id := range []string{"", "4b825dc6", good + "00", "main@sha1:" + good, strings.ToUpper(good[:39]) + "g"} {
		if _, err := parseID(id); err == nil {
			t.Errorf("parseID(%q) accepted it", id)
		}
	}
}

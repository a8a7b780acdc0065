package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	t.Parallel()
	p, err := Parse([]byte(`# policy
environments:
  staging:
    automated: true
  production:
    automated: false
    downgrade: allow
    via: pull-request
locks:
  - environment: production
    image: web
    reason: incident 42
    by: Ada
    at: 2026-11-25T10:00:00Z
`))
	if err != nil {
		t.Fatal(err)
	}
	if !p.AutomatedAllowed("staging") || p.AutomatedAllowed("production") || !p.AutomatedAllowed("qa") {
		t.Errorf("automated rules wrong: %+v", p.Environments)
	}
	if p.DowngradeAllowed("staging") || !p.DowngradeAllowed("production") {
		t.Errorf("downgrade rules wrong: %+v", p.Environments)
	}
	if p.Via("staging") != ViaPush || p.Via("production") != ViaPullRequest || p.Via("qa") != ViaPush {
		t.Errorf("via rules wrong: %+v", p.Environments)
	}
	l, ok := p.LockFor("production", "web")
	if !ok || l.Reason != "incident 42" || l.By != "Ada" {
		t.Fatalf("lock = %+v, %v", l, ok)
	}
	if got := l.Describe(); got != "web is locked in production by Ada since 2026-11-25T10:00:00Z (incident 42)" {
		t.Errorf("Describe() = %q", got)
	}
	if _, ok := p.LockFor("staging", "web"); ok {
		t.Error("staging reported locked")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"syntax":          "environments: [\n",
		"unknown key":     "environment:\n  staging: {}\n",
		"wrong type":      "environments:\n  staging:\n    automated: maybe\n",
		"bad downgrade":   "environments:\n  staging:\n    downgrade: sometimes\n",
		"bad via":         "environments:\n  staging:\n    via: pr\n",
		"lock sans image": "locks:\n  - environment: production\n",
		"two documents":   "locks: []\n---\nlocks: []\n",
		"not a mapping":   "- a\n- b\n",
	} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), FileName) {
			t.Errorf("%s: err = %v, want ErrInvalid naming %s", name, err, FileName)
		}
	}
}

func TestLockEditsKeepTheRest(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	original := "# Who may deploy where. Ask #platform before changing.\nenvironments:\n  production:\n    automated: false # people only\n"
	if err := os.WriteFile(filepath.Join(root, FileName), []byte(original), 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	changed, err := SetLock(root, Lock{Environment: "production", Image: "web", Reason: "incident 42", By: "Ada", At: at})
	if err != nil || !changed {
		t.Fatalf("SetLock: %v, %v", changed, err)
	}
	data, _ := os.ReadFile(filepath.Join(root, FileName))
	for _, keep := range []string{"# Who may deploy where. Ask #platform before changing.", "automated: false # people only", "reason: incident 42"} {
		if !strings.Contains(string(data), keep) {
			t.Errorf("after SetLock the file lacks %q:\n%s", keep, data)
		}
	}
	p, err := Load(root)
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := p.LockFor("production", "web"); !ok || !l.At.Equal(at) {
		t.Fatalf("lock not read back: %+v", p.Locks)
	}
	if changed, _ := SetLock(root, Lock{Environment: "production", Image: "web", Reason: "incident 42", By: "Ada", At: at.Add(time.Hour)}); changed {
		t.Error("the same lock again changed the file")
	}
	if changed, err := RemoveLock(root, "production", "web"); err != nil || !changed {
		t.Fatalf("RemoveLock: %v, %v", changed, err)
	}
	if changed, _ := RemoveLock(root, "production", "web"); changed {
		t.Error("removing a missing lock changed the file")
	}
	p, err = Load(root)
	if err != nil || len(p.Locks) != 0 || p.AutomatedAllowed("production") {
		t.Fatalf("after unlock: %+v, %v", p, err)
	}
}

func TestMissingFileIsEmptyPolicy(t *testing.T) {
	t.Parallel()
	p, err := Load(t.TempDir())
	if err != nil || !p.AutomatedAllowed("production") || len(p.Locks) != 0 {
		t.Fatalf("Load of a repo without %s = %+v, %v", FileName, p, err)
	}
	root := t.TempDir()
	if changed, err := SetLock(root, Lock{Environment: "staging", Image: "api"}); err != nil || !changed {
		t.Fatalf("SetLock on a repo without a policy: %v %v", changed, err)
	}
	p, err = Load(root)
	if err != nil || len(p.Locks) != 1 {
		t.Fatalf("%+v, %v", p, err)
	}
}

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
		"bad apply":       "environments:\n  staging:\n    apply: argo\n",
		"flux sans name":  "environments:\n  staging:\n    apply: flux\n",
		"flux empty name": "environments:\n  staging:\n    apply: flux\n    flux: {kustomization: \"\"}\n",
		"flux sans apply": "environments:\n  staging:\n    flux: {kustomization: flux-system/staging}\n",
		"flux and direct": "environments:\n  staging:\n    apply: direct\n    flux: {kustomization: flux-system/staging}\n",
		"flux typo":       "environments:\n  staging:\n    apply: flux\n    flux: {kustomizaton: flux-system/staging}\n",
		"flux bad ns":     "environments:\n  staging:\n    apply: flux\n    flux: {kustomization: Flux_System/staging}\n",
		"flux bad name":   "environments:\n  staging:\n    apply: flux\n    flux: {kustomization: flux-system/Staging}\n",
		"flux three":      "environments:\n  staging:\n    apply: flux\n    flux: {kustomization: a/b/c}\n",
		"flux as string":  "environments:\n  staging:\n    apply: flux\n    flux: flux-system/staging\n",
	} {
		if _, err := Parse([]byte(in)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), FileName) {
			t.Errorf("%s: err = %v, want ErrInvalid naming %s", name, err, FileName)
		}
	}
}

func TestApplyVia(t *testing.T) {
	t.Parallel()
	p, err := Parse([]byte(`environments:
  staging:
    apply: flux
    flux:
      kustomization: flux-system/staging
  qa:
    apply: flux
    flux: {kustomization: qa}
  production:
    apply: direct
`))
	if err != nil {
		t.Fatal(err)
	}
	for env, want := range map[string][2]string{
		"staging":    {ApplyFlux, "flux-system/staging"},
		"qa":         {ApplyFlux, "qa"},
		"production": {ApplyDirect, ""},
		"dev":        {ApplyDirect, ""},
	} {
		if via, k := p.ApplyVia(env); via != want[0] || k != want[1] {
			t.Errorf("ApplyVia(%s) = %s, %q; want %s, %q", env, via, k, want[0], want[1])
		}
	}
	for in, want := range map[string][2]string{
		"flux-system/staging": {"flux-system", "staging"},
		"staging":             {FluxNamespace, "staging"},
		"apps/web.prod":       {"apps", "web.prod"},
	} {
		if ns, name, err := ParseKustomization(in); err != nil || ns != want[0] || name != want[1] {
			t.Errorf("ParseKustomization(%q) = %q, %q, %v; want %q, %q", in, ns, name, err, want[0], want[1])
		}
	}
	for _, in := range []string{"", "/", "ns/", "/name", "a/b/c", "NS/name", "ns/Name", "ns/na me", strings.Repeat("n", 64) + "/x"} {
		if _, _, err := ParseKustomization(in); err == nil {
			t.Errorf("ParseKustomization(%q) accepted", in)
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

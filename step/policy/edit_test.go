package policy

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestEditLocksGolden runs every case in testdata/locks: deliver.yaml, an operation in op.txt
// ("set ENV IMAGE [reason=R] [by=B] [at=RFC3339]" or "remove ENV IMAGE") and the file expected
// after it, byte for byte. SetLock and RemoveLock then do the same on disk.
func TestEditLocksGolden(t *testing.T) {
	t.Parallel()
	dirs, err := filepath.Glob(filepath.Join("testdata", "locks", "*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			in := read(t, filepath.Join(dir, "deliver.yaml"))
			want := read(t, filepath.Join(dir, "expected.yaml"))
			op := strings.TrimSpace(string(read(t, filepath.Join(dir, "op.txt"))))
			root := t.TempDir()
			path := filepath.Join(root, FileName)
			if err := os.WriteFile(path, in, 0o600); err != nil {
				t.Fatal(err)
			}
			var changed bool
			var err error
			if strings.HasPrefix(op, "remove ") {
				f := strings.Fields(op)
				changed, err = RemoveLock(root, f[1], f[2])
			} else {
				changed, err = SetLock(root, parseSetOp(t, op))
			}
			if err != nil || !changed {
				t.Fatalf("%s: changed %v, %v", op, changed, err)
			}
			got := read(t, path)
			if !bytes.Equal(got, want) {
				t.Errorf("%s:\n--- got\n%s\n--- want\n%s", op, got, want)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("file mode not kept: %v %v", fi.Mode(), err)
			}
		})
	}
}

var setOp = regexp.MustCompile(`^set (\S+) (\S+)((?: (?:reason|by|at)=.*?)*)$`)
var setField = regexp.MustCompile(`(reason|by|at)=(.*?)(?: (?:reason|by|at)=|$)`)

func parseSetOp(t *testing.T, op string) Lock {
	t.Helper()
	m := setOp.FindStringSubmatch(op)
	if m == nil {
		t.Fatalf("bad op %q", op)
	}
	l := Lock{Environment: m[1], Image: m[2]}
	rest := m[3]
	for rest != "" {
		f := setField.FindStringSubmatchIndex(rest)
		if f == nil {
			break
		}
		key, val := rest[f[2]:f[3]], rest[f[4]:f[5]]
		switch key {
		case "reason":
			l.Reason = val
		case "by":
			l.By = val
		case "at":
			at, err := time.Parse(time.RFC3339, val)
			if err != nil {
				t.Fatal(err)
			}
			l.At = at
		}
		rest = rest[f[5]:]
	}
	return l
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLockUnlockRoundTrip: a lock and its removal leave the file as it was, byte for byte.
func TestLockUnlockRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	for name, in := range map[string]string{
		"no locks key":   "# policy\nenvironments:\n  staging:\n    automated: true   # keep\n\n# the end\n",
		"other locks":    "locks:\n  - environment: staging\n    image: api\n\n    reason: 'x'\nenvironments: {}\n",
		"crlf":           "environments:\r\n  staging: {}\r\n",
		"no newline":     "environments:\n  staging: {}",
		"indent-4 locks": "locks:\n    - environment: staging\n      image: api\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			path := filepath.Join(root, FileName)
			if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, l := range []Lock{{Environment: "production", Image: "web", Reason: "incident: 42", By: "Ada", At: at}, {Environment: "production", Image: "db"}} {
				if changed, err := SetLock(root, l); err != nil || !changed {
					t.Fatalf("SetLock(%+v): %v %v", l, changed, err)
				}
			}
			p, err := Load(root)
			if err != nil {
				t.Fatal(err)
			}
			if l, ok := p.LockFor("production", "web"); !ok || l.Reason != "incident: 42" || !l.At.Equal(at) {
				t.Fatalf("lock not read back: %+v %v\n%s", l, ok, read(t, path))
			}
			for _, img := range []string{"web", "db"} {
				if changed, err := RemoveLock(root, "production", img); err != nil || !changed {
					t.Fatalf("RemoveLock(%s): %v %v", img, changed, err)
				}
			}
			if got := string(read(t, path)); got != in {
				t.Errorf("round trip changed the file:\n--- got\n%q\n--- want\n%q", got, in)
			}
		})
	}
}

// TestEditLocksRefusals: files deliver cannot edit byte-exactly are refused, naming the file.
func TestEditLocksRefusals(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"flow top level": "{environments: {}}\n",
		"not yaml":       "locks: [\n",
	} {
		if _, err := EditLocks([]byte(in), []Lock{{Environment: "a", Image: "b"}}); err == nil || !strings.Contains(err.Error(), FileName) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

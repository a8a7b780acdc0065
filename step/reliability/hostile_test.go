package reliability_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// Limits every hostile input must stay within.
const (
	hostileMaxRSS  = 500 << 20
	hostileTimeout = 20 * time.Second
)

// billionLaughs is a YAML alias bomb: nine levels of nine aliases, 9^9 "lol"s when expanded.
func billionLaughs(key string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n  a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n", key)
	prev := "a"
	for _, c := range "bcdefghi" {
		n := string(c)
		fmt.Fprintf(&b, "  %s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", n, n, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = n
	}
	return b.String()
}

// big returns a YAML document of about n bytes: a ConfigMap whose data holds long lines.
func big(n int) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n")
	line := strings.Repeat("x", 1000)
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "  k%07d: %s\n", i, line)
	}
	return b.String()
}

const overlayHead = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {ns}\n"

// TestHostileInput feeds deliver deploy bad input of every kind. Each must be refused with
// its exit code and a message saying what is wrong, quickly and within 500 MB of memory;
// nothing may be pushed (the branch tip is unchanged; inputs that can be refused before
// cloning are refused without a single request to the git server) and nothing applied (the
// environment's namespace does not exist).
func TestHostileInput(t *testing.T) {
	t.Parallel()
	cl := cluster(t)
	outside := t.TempDir() // a directory outside any clone, for symlinks to point at
	marker := filepath.Join(outside, "pwned")
	// up climbs from anywhere in a clone to /.
	up := strings.Repeat("../", 40)
	tests := []struct {
		name string
		// overlay replaces the staging overlay's kustomization.yaml ({ns} is its namespace).
		overlay string
		// edit changes other files of the seed (path -> content).
		edit func(files map[string]string)
		// seed changes the seed directory (symlinks).
		seed func(dir string)
		// image replaces the --image value; flags are added; cmd replaces the whole command.
		image string
		flags []string
		cmd   []string
		// repo replaces the --config-repo URL ({bare} is the config repo's bare directory on
		// the git server's machine, {marker} the file a shell must never create).
		repo     string
		wantCode int
		wantMsg  string
		// noClone: refused before the config repo is contacted.
		noClone bool
		// bug names a reported deliver bug that fails this case (see knownBug); codeBug one
		// that only gets the exit code wrong (the other checks still run).
		bug, codeBug string
	}{
		// Malformed kustomizations.
		{name: "kustomization syntax error", overlay: overlayHead + "resources:\n  - ../../base\nimages: [\n  - name: web\n",
			wantCode: step.ExitUsage, wantMsg: "overlays/staging/kustomization.yaml"},
		{name: "kustomization images is a string", overlay: overlayHead + "resources:\n  - ../../base\nimages: web\n",
			wantCode: step.ExitUsage, wantMsg: "images: must be a list"},
		{name: "kustomization resources is a number", overlay: overlayHead + "resources: 42\n",
			wantCode: step.ExitUsage, wantMsg: "overlays/staging/kustomization.yaml"},
		{name: "kustomization newTag is a list", overlay: overlayHead + "resources:\n  - ../../base\nimages:\n  - name: web\n    newTag: [1, 2]\n",
			wantCode: step.ExitUsage, wantMsg: "newTag: must be a string"},
		{name: "kustomization duplicate images key", overlay: overlayHead + "resources:\n  - ../../base\nimages: []\nimages: []\n",
			wantCode: step.ExitUsage, wantMsg: "duplicate key images"},
		{name: "kustomization duplicate namespace key", overlay: overlayHead + "namespace: other\nresources:\n  - ../../base\n",
			wantCode: step.ExitUsage, wantMsg: "overlays/staging/kustomization.yaml:4: duplicate key namespace (first at line 3)"},
		{name: "kustomization duplicate image names", overlay: overlayHead + "resources:\n  - ../../base\nimages:\n  - name: web\n  - name: web\n",
			wantCode: step.ExitUsage, wantMsg: "duplicate image name"},
		{name: "kustomization with a NUL byte", overlay: overlayHead + "resources:\n  - ../../base\x00\n",
			wantCode: step.ExitUsage, wantMsg: "NUL"},
		{name: "kustomization of two documents", overlay: overlayHead + "resources:\n  - ../../base\n---\nimages: []\n",
			wantCode: step.ExitUsage, wantMsg: "more than one YAML document"},
		{name: "kustomization nested 10000 deep", overlay: overlayHead + "resources:\n  - ../../base\nx: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n",
			wantCode: step.ExitUsage, wantMsg: "overlays/staging/kustomization.yaml"},
		{name: "kustomization that includes itself", overlay: overlayHead + "resources:\n  - ../../base\n  - ../staging\n",
			wantCode: step.ExitUsage, wantMsg: "overlays/staging"},
		// Alias bombs.
		{name: "alias bomb in the kustomization", overlay: overlayHead + "resources:\n  - ../../base\n" + billionLaughs("x-bomb"),
			wantCode: step.ExitUsage, wantMsg: "overlays/staging/kustomization.yaml"},
		{name: "alias bomb in the kustomization's images", overlay: overlayHead + "resources:\n  - ../../base\n" + billionLaughs("images"),
			wantCode: step.ExitUsage, wantMsg: "overlays/staging/kustomization.yaml"},
		{name: "alias bomb in a base resource",
			edit: func(f map[string]string) {
				f["base/web.yaml"] += "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n" + billionLaughs("data")
			},
			wantCode: step.ExitUsage, wantMsg: "base"},
		{name: "alias bomb in the policy file", edit: func(f map[string]string) { f["deliver.yaml"] = billionLaughs("environments") },
			wantCode: step.ExitUsage, wantMsg: "deliver.yaml"},
		// Big files.
		{name: "50 MB kustomization", overlay: overlayHead + "resources:\n  - ../../base\n# " + strings.Repeat("x", 50<<20) + "\n",
			wantCode: step.ExitUsage, wantMsg: "larger than"},
		{name: "50 MB base resource",
			edit: func(f map[string]string) {
				f["base/big.yaml"] = big(50 << 20)
				f["base/kustomization.yaml"] += "  - big.yaml\n"
			},
			wantCode: step.ExitUsage, wantMsg: "big.yaml",
		},
		// Names and paths.
		{name: "env with ..", flags: []string{"--env", "../production"}, wantCode: step.ExitUsage, wantMsg: "--env", noClone: true},
		{name: "env with /", flags: []string{"--env", "staging/../../etc"}, wantCode: step.ExitUsage, wantMsg: "--env", noClone: true},
		{name: "env with a newline", flags: []string{"--env", "staging\nDeliver-Environment: production"}, wantCode: step.ExitUsage, wantMsg: "--env", noClone: true},
		{name: "env with a space", flags: []string{"--env", "staging production"}, wantCode: step.ExitUsage, wantMsg: "--env", noClone: true},
		{name: "env of 64 characters", flags: []string{"--env", strings.Repeat("s", 64)}, wantCode: step.ExitUsage, wantMsg: "--env", noClone: true},
		{name: "overlay path with ..", flags: []string{"--path-template", "overlays/{env}/../../.."}, wantCode: step.ExitUsage, wantMsg: "--path-template", noClone: true},
		{name: "overlay path absolute", flags: []string{"--path-template", "/etc/{env}"}, wantCode: step.ExitUsage, wantMsg: "--path-template", noClone: true},
		{name: "overlay path with a newline", flags: []string{"--path-template", "overlays/{env}\n"}, wantCode: step.ExitUsage, wantMsg: "--path-template", noClone: true},
		{name: "overlay path with a backslash escape", flags: []string{"--path-template", `..\..\{env}`}, wantCode: step.ExitUsage, wantMsg: "--path-template", noClone: true},
		// Symlinks out of the repo.
		// go-git rewrites absolute symlink targets into the clone, so these point nowhere;
		// relative ones with enough ".." really leave it.
		{name: "base dir symlinked to /etc", seed: func(dir string) { replaceWithSymlink(t, filepath.Join(dir, "base"), "/etc") },
			wantCode: step.ExitUsage, wantMsg: "resources entry \"../../base\""},
		{name: "base dir symlinked to ../../../etc", seed: func(dir string) { replaceWithSymlink(t, filepath.Join(dir, "base"), up+"etc") },
			wantCode: step.ExitUsage, wantMsg: "outside the repository root"},
		{name: "base resource symlinked to ../../../etc/passwd", seed: func(dir string) {
			replaceWithSymlink(t, filepath.Join(dir, "base", "web.yaml"), up+"etc/passwd")
		}, wantCode: step.ExitUsage, wantMsg: "outside the repository root"},
		{name: "kustomization symlinked out", seed: func(dir string) {
			fixture.WriteFiles(t, outside, map[string]string{"k/kustomization.yaml": "resources:\n  - ../../base\n"})
			replaceWithSymlink(t, filepath.Join(dir, "overlays", "staging", "kustomization.yaml"), up+strings.TrimPrefix(outside, "/")+"/k/kustomization.yaml")
		}, wantCode: step.ExitUsage, wantMsg: "symlink"},
		{name: "overlay dir symlinked out", seed: func(dir string) {
			replaceWithSymlink(t, filepath.Join(dir, "overlays", "staging"), up+strings.TrimPrefix(outside, "/")+"/victim")
		}, wantCode: step.ExitUsage, wantMsg: "outside the repository root",
		},
		{name: "policy file symlinked out", seed: func(dir string) { replaceWithSymlink(t, filepath.Join(dir, "deliver.yaml"), up+"etc/passwd") },
			wantCode: step.ExitUsage, wantMsg: "deliver.yaml"},
		// Remote and executable content.
		{name: "remote base", overlay: overlayHead + "resources:\n  - https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v3.3.1\n  - ../../base\n",
			wantCode: step.ExitUsage, wantMsg: "remote resources are not allowed"},
		{name: "remote base, git shorthand", overlay: overlayHead + "resources:\n  - github.com/kubernetes-sigs/kustomize/examples/helloWorld\n  - ../../base\n",
			wantCode: step.ExitUsage, wantMsg: "remote resources are not allowed"},
		{name: "helm chart", overlay: overlayHead + "resources:\n  - ../../base\nhelmCharts:\n  - name: x\n    repo: https://charts.example.com\n",
			wantCode: step.ExitUsage, wantMsg: "helm"},
		// Image references.
		{name: "image with spaces", image: "web=Not A Ref:1", wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		{name: "image without tag or digest", image: "web={registry}/team/web", wantCode: step.ExitUsage, wantMsg: "needs a tag or a digest", noClone: true},
		{name: "image in upper case", image: "web={registry}/Team/Web:1.4.3", wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		{name: "image with a bad digest", image: "web={registry}/team/web@sha256:1234", wantCode: step.ExitUsage, wantMsg: "digest", noClone: true},
		{name: "image of 10000 characters", image: "web={registry}/" + strings.Repeat("a", 10000) + ":1", wantCode: step.ExitUsage, wantMsg: "longer than", noClone: true},
		{name: "empty image", image: "", wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		{name: "image name twice", flags: []string{"--image", "web={registry}/team/web:1.4.3"}, wantCode: step.ExitUsage, wantMsg: "given twice", noClone: true},
		{name: "tag with ;", image: "web={registry}/team/web:1.0;touch " + marker, wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		{name: "tag with $()", image: "web={registry}/team/web:$(touch " + marker + ")", wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		{name: "tag with backticks", image: "web={registry}/team/web:`touch " + marker + "`", wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		{name: "tag with a pipe", image: "web={registry}/team/web:1|touch " + marker, wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		{name: "tag with a newline", image: "web={registry}/team/web:1\nDeliver-Environment: production", wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		{name: "rollback tag with $()", cmd: []string{"rollback", "--env", "staging", "--image", "web", "--no-apply", "--tag", "$(touch " + marker + ")"}, wantCode: step.ExitUsage, wantMsg: "--tag", noClone: true},
		{name: "lock image with ;", cmd: []string{"lock", "--env", "staging", "--image", "web;touch " + marker}, wantCode: step.ExitUsage, wantMsg: "--image", noClone: true},
		// Policy.
		{name: "policy file that does not parse", edit: func(f map[string]string) { f["deliver.yaml"] = "environments: [\n" },
			wantCode: step.ExitUsage, wantMsg: "invalid policy file deliver.yaml"},
		{name: "policy file with an unknown key", edit: func(f map[string]string) { f["deliver.yaml"] = "environment:\n  staging: {}\n" },
			wantCode: step.ExitUsage, wantMsg: "invalid policy file deliver.yaml"},
		{name: "policy file with a bad value", edit: func(f map[string]string) { f["deliver.yaml"] = "environments:\n  staging:\n    downgrade: sometimes\n" },
			wantCode: step.ExitUsage, wantMsg: "neither deny nor allow"},
		// Commands and flags.
		{name: "unknown command", cmd: []string{"deplyo", "--env", "staging"}, wantCode: step.ExitUsage, wantMsg: "unknown command", noClone: true},
		{name: "unknown flag", flags: []string{"--frobnicate"}, wantCode: step.ExitUsage, wantMsg: "frobnicate", noClone: true},
		{name: "flag without its value", cmd: []string{"deploy", "--image", "web=x:1", "{git}", "--env"}, wantCode: step.ExitUsage, wantMsg: "flag needs an argument: -env", noClone: true},
		{name: "bad --on-failure", flags: []string{"--on-failure", "shrug"}, wantCode: step.ExitUsage, wantMsg: "--on-failure", noClone: true},
		{name: "negative --timeout", flags: []string{"--timeout", "-1s"}, wantCode: step.ExitUsage, wantMsg: "--timeout", noClone: true},
		{name: "bad --push-attempts", flags: []string{"--push-attempts", "0"}, wantCode: step.ExitUsage, wantMsg: "--push-attempts", noClone: true},
		{name: "bad --trigger", flags: []string{"--trigger", "sometimes"}, wantCode: step.ExitUsage, wantMsg: "--trigger", noClone: true},
		// Branch names git refuses.
		{name: "branch with ..", flags: []string{"--branch", "main..x"}, wantCode: step.ExitUsage, wantMsg: "--branch \"main..x\": not a valid git branch name", noClone: true},
		{name: "branch with a space", flags: []string{"--branch", "main x"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with a newline", flags: []string{"--branch", "main\nx"}, wantCode: step.ExitUsage, wantMsg: "--branch \"main\\nx\"", noClone: true},
		{name: "branch with ~", flags: []string{"--branch", "main~1"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with ^", flags: []string{"--branch", "main^"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with :", flags: []string{"--branch", "main:x"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with ?", flags: []string{"--branch", "main?"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with *", flags: []string{"--branch", "main*"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with [", flags: []string{"--branch", "main[1]"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with a backslash", flags: []string{"--branch", `main\x`}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with a leading -", flags: []string{"--branch=-main"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch ending in .lock", flags: []string{"--branch", "main.lock"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		{name: "branch with @{", flags: []string{"--branch", "main@{1}"}, wantCode: step.ExitUsage, wantMsg: "--branch", noClone: true},
		// Config repo URLs: only https://, http://, ssh:// and user@host:path.
		{name: "config repo over ext::", repo: "ext::sh -c touch% {marker}", wantCode: step.ExitUsage, wantMsg: "unsupported transport ext::", noClone: true},
		{name: "config repo over git://", repo: "git://127.0.0.1:9418/config.git", wantCode: step.ExitUsage, wantMsg: "unsupported scheme git://", noClone: true},
		{name: "config repo over file://", repo: "file://{bare}", wantCode: step.ExitUsage, wantMsg: "unsupported scheme file://", noClone: true},
		{name: "config repo as a local path", repo: "{bare}", wantCode: step.ExitUsage, wantMsg: "local paths are not supported", noClone: true},
		// The environment's URL goes to CI outputs: one line.
		{name: "env URL with a newline", flags: []string{"--env-url", "https://staging.example.com\nDELIVER_CHANGED=false"}, wantCode: step.ExitUsage, wantMsg: "--env-url", noClone: true},
		{name: "env URL with an escape sequence", flags: []string{"--env-url", "https://staging.example.com/\x1b[31m"}, wantCode: step.ExitUsage, wantMsg: "--env-url", noClone: true},
		// A path template without {env} would send every environment to one overlay.
		{name: "overlay path without {env}", flags: []string{"--path-template", "overlays/staging"}, wantCode: step.ExitUsage, wantMsg: "--path-template \"overlays/staging\": has no {env}", noClone: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			knownBug(t, tt.bug)
			ns := uniqueNS("h")
			s := newServers(t, webApp(ns), fixture.Options{
				Edit: func(f map[string]string) {
					if tt.overlay != "" {
						f["overlays/staging/kustomization.yaml"] = strings.ReplaceAll(tt.overlay, "{ns}", ns)
					}
					if tt.edit != nil {
						tt.edit(f)
					}
				},
				Seed: tt.seed,
			})
			s.PushImage(t, "team/web", "1.4.3")
			image := "web=" + s.Reg.Ref("team/web", "1.4.3")
			if tt.image != "" || strings.HasPrefix(tt.name, "empty image") {
				image = strings.ReplaceAll(tt.image, "{registry}", s.Reg.Host)
			}
			for i, f := range tt.flags {
				tt.flags[i] = strings.ReplaceAll(f, "{registry}", s.Reg.Host)
			}
			a := args([]string{"deploy", "--env", "staging", "--image", image, "--kubeconfig", cl.Kubeconfig}, timeoutFlags, tt.flags, s.GitArgs())
			if tt.cmd != nil {
				a = nil
				for _, c := range tt.cmd {
					if c == "{git}" {
						a = append(a, s.GitArgs()...)
					} else {
						a = append(a, c)
					}
				}
				if !strings.Contains(strings.Join(tt.cmd, " "), "{git}") {
					a = append(a, s.GitArgs()...)
				}
			}
			if tt.repo != "" {
				repo := strings.NewReplacer("{bare}", s.Git.BareDir(s.Name), "{marker}", marker).Replace(tt.repo)
				for i := range a {
					if a[i] == "--config-repo" && i+1 < len(a) {
						a[i+1] = repo
					}
				}
			}
			victim := filepath.Join(outside, "victim")
			if tt.name == "overlay dir symlinked out" {
				fixture.WriteFiles(t, victim, map[string]string{"kustomization.yaml": "resources:\n  - ../../base\nimages:\n  - name: web\n    newTag: \"0.1\"\n"})
			}
			old, requests := s.Head(t), s.Git.Requests()
			r := start(t, opts{deadline: hostileTimeout + 30*time.Second}, a...).wait()
			t.Logf("%s: %s", tt.name, firstLine(r))
			if r.hung || r.elapsed > hostileTimeout {
				t.Errorf("deliver took %s (limit %s)", r.elapsed.Round(time.Millisecond), hostileTimeout)
			}
			if r.maxRSS > hostileMaxRSS {
				t.Errorf("deliver used %d MiB of memory (limit %d MiB)", r.maxRSS>>20, hostileMaxRSS>>20)
			}
			t.Run("exit code and message", func(t *testing.T) {
				knownBug(t, tt.codeBug)
				if r.code != tt.wantCode {
					t.Errorf("exit %d, want %d\n%s", r.code, tt.wantCode, r)
				}
				if !strings.Contains(r.stderr, tt.wantMsg) {
					t.Errorf("stderr does not say %q:\n%s", tt.wantMsg, r.stderr)
				}
			})
			if s.Head(t) != old {
				t.Errorf("the branch moved from %s to %s", old, s.Head(t))
			}
			if tt.noClone && s.Git.Requests() != requests {
				t.Errorf("the git server got %d requests although the input can be refused before cloning", s.Git.Requests()-requests)
			}
			if namespaceExists(t, cl, ns) {
				t.Errorf("namespace %s was created: something was applied", ns)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("%s exists: a shell ran part of the input", marker)
			}
			if tt.name == "overlay dir symlinked out" {
				if b, _ := os.ReadFile(filepath.Join(victim, "kustomization.yaml")); !strings.Contains(string(b), "newTag: \"0.1\"") {
					t.Errorf("deliver wrote through the symlinked overlay, outside the clone:\n%s", b)
				}
				if entries, _ := os.ReadDir(victim); len(entries) != 1 {
					t.Errorf("deliver created files in %s, outside the clone: %d entries", victim, len(entries))
				}
			}
			checkTempClean(t, r)
		})
	}
}

// replaceWithSymlink removes path and puts a symlink to target in its place.
func replaceWithSymlink(t *testing.T, path, target string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

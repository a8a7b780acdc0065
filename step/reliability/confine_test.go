package reliability_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv/faultproxy"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// tattletales puts scripts named like every program deliver must never run (git, helm,
// kustomize, docker, ...) in a new directory and returns it (to go first in PATH) and the
// file each of them appends its name and arguments to.
func tattletales(t *testing.T) (dir, log string) {
	t.Helper()
	dir = t.TempDir()
	log = filepath.Join(t.TempDir(), "executed")
	for _, name := range []string{"git", "helm", "kustomize", "docker", "podman", "nerdctl", "ssh", "curl", "wget", "kubectl", "sh", "bash"} {
		script := fmt.Sprintf("#!/bin/sh\necho %s \"$@\" >> %q\nexit 1\n", name, log)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir, log
}

func executed(t *testing.T, log string) string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// TestNoNetworkForRemoteBases: a kustomization naming remote bases is refused without a
// single outbound attempt. HTTP_PROXY, HTTPS_PROXY and ALL_PROXY point at a listener that
// records every connection (Go never proxies 127.0.0.1, so the test's own servers are
// reached directly), and git, ssh, curl and friends on PATH record any run. A control run
// shows the recorder does see traffic deliver sends to a host outside the machine.
func TestNoNetworkForRemoteBases(t *testing.T) {
	t.Parallel()
	recorder := faultproxy.New(t, closedPort(t))
	recorder.Blackhole()
	bin, log := tattletales(t)
	proxyEnv := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "HTTP_PROXY=http://" + recorder.Addr, "HTTPS_PROXY=http://" + recorder.Addr,
		"ALL_PROXY=http://" + recorder.Addr, "http_proxy=http://" + recorder.Addr, "https_proxy=http://" + recorder.Addr}

	// Control: an image on a registry outside the machine goes through the proxy.
	control := start(t, opts{env: proxyEnv, deadline: time.Minute}, "deploy", "--env", "staging", "--no-apply", "--registry-timeout", "1s",
		"--config-repo", "http://127.0.0.1:1/config.git", "--image", "web=registry.example.com/team/web:1.0").wait()
	if control.code != step.ExitRegistry || recorder.Accepted() == 0 {
		t.Fatalf("control run: exit %d and %d connections to the recording proxy; want 9 and at least one (the proxy variables are not honoured, so the test proves nothing)\n%s",
			control.code, recorder.Accepted(), control)
	}
	before := recorder.Accepted()

	for _, remote := range []string{
		"https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v3.3.1",
		"github.com/kubernetes-sigs/kustomize/examples/helloWorld",
		"git@github.com:kubernetes-sigs/kustomize.git//examples/helloWorld",
		"ssh://git@github.com/kubernetes-sigs/kustomize//examples/helloWorld",
		"git::https://gitlab.example.com/team/config//base?ref=main",
		"http://config.example.com/base.yaml",
	} {
		t.Run(remote, func(t *testing.T) {
			ns := uniqueNS("remote")
			s := newServers(t, webApp(ns), fixture.Options{Edit: func(f map[string]string) {
				f["overlays/staging/kustomization.yaml"] = strings.Replace(f["overlays/staging/kustomization.yaml"], "  - ../../base\n", "  - ../../base\n  - "+remote+"\n", 1)
			}})
			s.PushImage(t, "team/web", "1.4.3")
			old := s.Head(t)
			r := start(t, opts{env: proxyEnv, deadline: time.Minute}, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, timeoutFlags, s.GitArgs())...).wait()
			t.Logf("%s: %s", remote, firstLine(r))
			if r.code != step.ExitUsage || !strings.Contains(r.stderr, "remote resources are not allowed") {
				t.Errorf("exit %d, want %d refusing the remote base\n%s", r.code, step.ExitUsage, r)
			}
			if n := recorder.Accepted() - before; n != 0 {
				t.Errorf("%d outbound connection attempt(s) through the proxy", n)
			}
			if x := executed(t, log); x != "" {
				t.Errorf("deliver ran programs:\n%s", x)
			}
			if s.Head(t) != old {
				t.Error("the branch moved")
			}
		})
	}
}

// TestNoPlugins: kustomizations that would run code — exec and container KRM functions in
// generators, transformers and validators, legacy exec plugins installed in the user's plugin
// directory — are refused; the programs never run, nothing is pushed or applied.
func TestNoPlugins(t *testing.T) {
	t.Parallel()
	cl := cluster(t)
	bin, log := tattletales(t)
	home := t.TempDir()
	fn := filepath.Join(t.TempDir(), "fn")
	if err := os.WriteFile(fn, []byte(fmt.Sprintf("#!/bin/sh\necho fn \"$@\" >> %q\ncat\n", log)), 0o755); err != nil {
		t.Fatal(err)
	}
	// A legacy exec plugin where kustomize looks for them: $XDG_CONFIG_HOME/kustomize/plugin/GROUP/VERSION/lowercasekind/Kind.
	legacy := filepath.Join(home, ".config", "kustomize", "plugin", "example.com", "v1", "legacygen", "LegacyGen")
	fixture.WriteFiles(t, filepath.Dir(legacy), map[string]string{"LegacyGen": fmt.Sprintf("#!/bin/sh\necho legacy \"$@\" >> %q\n", log)})
	if err := os.Chmod(legacy, 0o755); err != nil {
		t.Fatal(err)
	}
	execFn := func(kind string) string {
		return fmt.Sprintf("apiVersion: example.com/v1\nkind: %s\nmetadata:\n  name: x\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: %s\n", kind, fn)
	}
	containerFn := "apiVersion: example.com/v1\nkind: Fn\nmetadata:\n  name: x\n  annotations:\n    config.kubernetes.io/function: |\n      container:\n        image: example.com/fn:1\n"
	tests := []struct {
		name, field, config string
	}{
		{"exec function as a generator", "generators", execFn("Gen")},
		{"exec function as a transformer", "transformers", execFn("Tr")},
		{"exec function as a validator", "validators", execFn("Val")},
		{"container function as a generator", "generators", containerFn},
		{"legacy exec plugin", "generators", "apiVersion: example.com/v1\nkind: LegacyGen\nmetadata:\n  name: x\n"},
		{"inline exec function", "transformers", "|\n" + indent(execFn("Inline"), "    ")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ns := uniqueNS("plugin")
			s := newServers(t, webApp(ns), fixture.Options{Edit: func(f map[string]string) {
				if strings.HasPrefix(tt.config, "|") {
					f["overlays/staging/kustomization.yaml"] += tt.field + ":\n  - " + tt.config
					return
				}
				f["overlays/staging/plugin.yaml"] = tt.config
				f["overlays/staging/kustomization.yaml"] += tt.field + ":\n  - plugin.yaml\n"
			}})
			s.PushImage(t, "team/web", "1.4.3")
			old := s.Head(t)
			env := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"), "KUSTOMIZE_PLUGIN_HOME=" + filepath.Join(home, ".config", "kustomize", "plugin")}
			r := start(t, opts{env: env, home: home, deadline: time.Minute}, args([]string{"deploy", "--env", "staging", "--kubeconfig", cl.Kubeconfig,
				"--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, timeoutFlags, s.GitArgs())...).wait()
			t.Logf("%s: %s", tt.name, firstLine(r))
			if !strings.Contains(r.stderr, "plugin") && !strings.Contains(r.stderr, "function") {
				t.Errorf("the error does not say plugins or functions are refused:\n%s", r.stderr)
			}
			t.Run("exit code", func(t *testing.T) {
				if r.code != step.ExitUsage {
					t.Errorf("exit %d, want %d (a kustomization that runs code is bad input)\n%s", r.code, step.ExitUsage, r)
				}
			})
			if x := executed(t, log); x != "" {
				t.Errorf("code from the config repo ran:\n%s", x)
			}
			if s.Head(t) != old {
				t.Error("the branch moved")
			}
			if namespaceExists(t, cl, ns) {
				t.Errorf("namespace %s exists: something was applied", ns)
			}
		})
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// snapshot lists every file and directory under root with its size, mode and modification
// time.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = fmt.Sprintf("%v %d %s", fi.Mode(), fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var d []string
	for k, v := range after {
		if b, ok := before[k]; !ok {
			d = append(d, "created "+k)
		} else if b != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			d = append(d, "removed "+k)
		}
	}
	sort.Strings(d)
	return d
}

// TestWritesConfined runs deploy (applying to the cluster), rollback, lock and history with
// TMPDIR, HOME and the working directory each a fresh directory, and the kubeconfig and SSH
// key in another: afterwards nothing was created or changed in HOME, the working directory
// (but the GitLab dotenv report, which it is asked for) or beside the kubeconfig, and TMPDIR
// is empty again: the clone is gone.
func TestWritesConfined(t *testing.T) {
	t.Parallel()
	cl := cluster(t)
	ns := uniqueNS("confine")
	a := webApp(ns)
	s := newServers(t, a, fixture.Options{})
	s.PushImage(t, "team/web", "1.1.0")
	s.PushImage(t, "team/web", "1.2.0")
	inputs := t.TempDir()
	kubeconfig := filepath.Join(inputs, "kubeconfig")
	b, err := os.ReadFile(cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	fixture.WriteFiles(t, inputs, map[string]string{"kubeconfig": string(b)})
	home, tmp := t.TempDir(), t.TempDir()
	for _, tt := range []struct {
		name   string
		env    []string
		args   []string
		output []string // files the command is asked to write in the working directory
	}{
		{"deploy", nil, []string{"deploy", "--env", "staging", "--kubeconfig", kubeconfig, "--image", "web=" + s.Reg.Ref("team/web", "1.1.0")}, nil},
		{"deploy in GitLab", []string{"GITLAB_CI=true", "CI_PIPELINE_SOURCE=web"}, []string{"deploy", "--env", "staging", "--kubeconfig", kubeconfig, "--image", "web=" + s.Reg.Ref("team/web", "1.2.0")}, []string{"deliver.env"}},
		{"rollback", nil, []string{"rollback", "--env", "staging", "--kubeconfig", kubeconfig, "--image", "web"}, nil},
		{"lock", nil, []string{"lock", "--env", "staging", "--image", "web"}, nil},
		{"history", nil, []string{"history", "--env", "staging"}, nil},
		{"diff", []string{"KUBECONFIG=" + kubeconfig}, []string{"diff", "--env", "staging"}, nil},
	} {
		dir := t.TempDir()
		before := map[string]map[string]string{"HOME": snapshot(t, home), "working directory": snapshot(t, dir), "kubeconfig directory": snapshot(t, inputs)}
		argv := args(tt.args, s.GitArgs())
		if tt.name != "lock" && tt.name != "history" && tt.name != "diff" {
			argv = append(argv, timeoutFlags...)
		}
		r := start(t, opts{env: tt.env, home: home, tmp: tmp, dir: dir, deadline: time.Minute}, argv...).wait()
		t.Logf("%s: %s", tt.name, firstLine(r))
		if r.code != 0 && !(tt.name == "diff" && r.code == step.ExitFailure) {
			t.Fatalf("%s:\n%s", tt.name, r)
		}
		after := map[string]map[string]string{"HOME": snapshot(t, home), "working directory": snapshot(t, dir), "kubeconfig directory": snapshot(t, inputs)}
		for where := range before {
			for _, d := range diffSnapshots(before[where], after[where]) {
				// Creating an output changes its directory's modification time.
				allowed := len(tt.output) > 0 && d == "changed ."
				for _, o := range tt.output {
					allowed = allowed || d == "created "+o
				}
				if !allowed {
					t.Errorf("%s: %s in the %s", tt.name, d, where)
				}
			}
		}
		checkTempClean(t, r)
	}
}

package step_test

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

var update = flag.Bool("update", false, "rewrite the golden files of the command tests (review the diff!)")

// want is what one run of deliver must give.
type want struct {
	code int // anyFailure: any code but 0
	// stdout and stderr are regular expressions the streams must match (empty: no check);
	// a refusal (code 2 to 9) must also leave stdout empty, unless stdout is given.
	stdout, stderr string
	// golden names a file under testdata whose content stdout must be, once normalized.
	golden string
}

// anyFailure is a want.code that accepts every code but 0.
const anyFailure = -1

// check fails the test unless r is what w says.
func (w want) check(t *testing.T, r result) {
	t.Helper()
	if r.code != w.code && (w.code != anyFailure || r.code == 0) {
		t.Errorf("exit %d, want %d\n%s", r.code, w.code, r)
		return
	}
	if w.stdout != "" && !regexp.MustCompile(w.stdout).MatchString(r.stdout) {
		t.Errorf("stdout does not match %q\n%s", w.stdout, r)
	}
	if w.stdout == "" && w.golden == "" && w.code >= step.ExitUsage && w.code <= step.ExitRegistry && r.stdout != "" {
		t.Errorf("a refusal printed a result on stdout\n%s", r)
	}
	if w.stderr != "" && !regexp.MustCompile(w.stderr).MatchString(r.stderr) {
		t.Errorf("stderr does not match %q\n%s", w.stderr, r)
	}
	if w.golden != "" {
		golden(t, w.golden, r.stdout)
	}
}

// golden compares got with testdata/name, or rewrites the file with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if string(b) != got {
		t.Errorf("output differs from %s (go test -update rewrites it; review the diff):\n--- got\n%s--- want\n%s", path, got, b)
	}
}

// errLine is a regular expression for deliver's error line saying msg (a literal); in GitLab
// CI the line is red.
func errLine(msg string) string {
	return `(?m)^(\x1b\[31;1m)?deliver: error: .*` + regexp.QuoteMeta(msg)
}

// fakeKubeconfig is a kubeconfig for a cluster nobody runs: enough for the commands that bind
// the cluster flags before anything is contacted.
const fakeKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`

// TestCommandRefusals: every command refuses bad input (flags, their variables, arguments,
// environment names, paths) with exit 2, a message naming what is wrong, and nothing on
// stdout, before it contacts anything: the config repo URL leads nowhere.
func TestCommandRefusals(t *testing.T) {
	t.Parallel()
	repo := []string{"--config-repo", "https://git.invalid/team/config.git"}
	deploy := args([]string{"deploy", "--env", "staging", "--image", "web=registry.invalid/team/web:1.0.0"}, repo)
	noApply := args(deploy, []string{"--no-apply"})
	kube := []string{"--kubeconfig-data", fakeKubeconfig}
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	usage := func(msg string) want { return want{code: step.ExitUsage, stderr: errLine(msg)} }
	tests := []struct {
		name string
		env  []string
		args []string
		want want
	}{
		// The app.
		{name: "no command", args: nil, want: want{code: step.ExitUsage, stdout: `^NAME:\n   deliver - `, stderr: errLine("no command given")}},
		{name: "unknown command", args: []string{"deplyo"}, want: usage(`unknown command "deplyo"; run deliver --help for the list`)},
		{name: "unknown global flag", args: []string{"--bogus", "deploy"}, want: usage("flag provided but not defined: -bogus")},
		{name: "unknown command flag", args: []string{"deploy", "--bogus"}, want: usage("deploy: flag provided but not defined: -bogus (see deliver deploy --help)")},
		{name: "flag without its value", args: []string{"deploy", "--env"}, want: usage("deploy: flag needs an argument: -env")},
		{name: "help as an argument", args: []string{"deploy", "help"}, want: usage(`deploy takes no arguments (got "help"); images go in --image`)},
		{name: "bad int variable", env: []string{"DELIVER_PUSH_ATTEMPTS=many"}, args: []string{"history", "--env", "staging"},
			want: usage(`history: could not parse "many" as int value from environment variable "DELIVER_PUSH_ATTEMPTS" for flag push-attempts`)},
		{name: "bad bool variable", env: []string{"DELIVER_WAIT=maybe"}, args: []string{"apply", "--env", "staging"},
			want: usage(`apply: could not parse "maybe" as bool value from environment variable "DELIVER_WAIT" for flag wait`)},
		{name: "bad duration variable", env: []string{"DELIVER_TIMEOUT=5"}, args: []string{"diff", "--env", "staging"},
			want: usage(`diff: could not parse "5" as duration value from environment variable "DELIVER_TIMEOUT" for flag timeout`)},
		{name: "duration without a unit", args: []string{"deploy", "--push-timeout", "5"},
			want: usage(`deploy: invalid value "5" for --push-timeout: time: missing unit in duration "5"; want a duration such as 90s, 5m or 1h30m (see deliver deploy --help)`)},
		{name: "duration with a quote", args: []string{"deploy", "--push-timeout", `5"`},
			want: usage(`deploy: invalid value "5\"" for --push-timeout: time: unknown unit "\"" in duration "5\""; want a duration such as 90s, 5m or 1h30m (see deliver deploy --help)`)},
		{name: "bool flag with a word", args: []string{"apply", "--wait=maybe"},
			want: usage(`apply: invalid value "maybe" for --wait: want true or false (or the flag alone for true) (see deliver apply --help)`)},
		{name: "int flag with a word", args: []string{"history", "--push-attempts=many"},
			want: usage(`history: invalid value "many" for --push-attempts: want a whole number (see deliver history --help)`)},
		{name: "int flag out of range", args: []string{"history", "--push-attempts=99999999999999999999"},
			want: usage(`history: invalid value "99999999999999999999" for --push-attempts: out of range; want a whole number of at most 19 digits (see deliver history --help)`)},
		{name: "version with an argument", args: []string{"version", "x"}, want: usage(`version takes no arguments, got "x"`)},

		// deploy.
		{name: "deploy: no environment", args: []string{"deploy"}, want: usage("--env: no environment given")},
		{name: "deploy: environment with ..", args: []string{"deploy", "--env", "../production"}, want: usage(`--env "../production": must not contain ".."`)},
		{name: "deploy: environment from the variable", env: []string{"DELIVER_ENV=team/staging"}, args: []string{"deploy"}, want: usage(`--env "team/staging": only letters, digits, '-', '_' and '.' are allowed (found '/')`)},
		{name: "deploy: environment too long", args: []string{"deploy", "--env", strings.Repeat("e", 64)}, want: usage("longer than 63 characters")},
		{name: "deploy: overlay outside the repo", args: []string{"deploy", "--env", "staging", "--path-template", "../{env}"}, want: usage(`--path-template "../{env}": the overlay path "../staging" must stay inside the config repo`)},
		{name: "deploy: no image", args: []string{"deploy", "--env", "staging"}, want: usage("--image: no image given")},
		{name: "deploy: empty image list", env: []string{"DELIVER_IMAGE= , "}, args: []string{"deploy", "--env", "staging"}, want: usage("--image: no image given")},
		{name: "deploy: image without tag or digest", args: []string{"deploy", "--env", "staging", "--image", "web=registry.invalid/team/web"}, want: usage(`--image "web=registry.invalid/team/web": needs a tag or a digest`)},
		{name: "deploy: image to keep", args: []string{"deploy", "--env", "staging", "--image", "web=registry.invalid/team/web:*"}, want: usage(`"*" (keep) is for set-image`)},
		{name: "deploy: image twice", args: []string{"deploy", "--env", "staging", "--image", "web=r.invalid/web:1,web=r.invalid/web:2"}, want: usage(`--image: image "web" given twice`)},
		{name: "deploy: invalid image", args: []string{"deploy", "--env", "staging", "--image", "web=r.invalid/web:1;reboot"}, want: usage(`--image "web=r.invalid/web:1;reboot"`)},
		{name: "deploy: no config repo", args: []string{"deploy", "--env", "staging", "--image", "web=r.invalid/web:1"}, want: usage("--config-repo (or DELIVER_CONFIG_REPO) is required")},
		{name: "deploy: no push attempts", args: args(noApply, []string{"--push-attempts", "0"}), want: usage("--push-attempts must be at least 1")},
		{name: "deploy: no push time", args: args(noApply, []string{"--push-timeout", "0s"}), want: usage("--push-timeout must be positive")},
		{name: "deploy: unknown trigger", args: args(noApply, []string{"--trigger", "sometimes"}), want: usage(`--trigger "sometimes": want manual or automated`)},
		{name: "deploy: SSH key file missing", args: args(noApply, []string{"--ssh-key-file", "deploy-key"}), want: usage("--ssh-key-file: open ")},
		{name: "deploy: git CA file missing", args: args(noApply, []string{"--git-ca-file", "ca.pem"}), want: usage("--git-ca-file: open ")},
		{name: "deploy: registry CA file missing", args: args(noApply, []string{"--registry-ca-file", "ca.pem"}), want: usage("--registry-ca-file: open ")},
		{name: "deploy: registry CA file not PEM", args: args(noApply, []string{"--registry-ca-file", notPEM}), want: usage("--registry-ca-file " + notPEM + ": no PEM certificates found")},
		{name: "deploy: unknown on-failure", args: args(noApply, []string{"--on-failure", "panic"}), want: usage(`--on-failure "panic": want revert or keep`)},
		{name: "deploy: no rollout time", args: args(deploy, kube, []string{"--timeout", "0s"}), want: usage("--timeout must be positive")},
		{name: "deploy: no kubeconfig", args: deploy, want: usage("finding a kubeconfig: invalid: none given (--kubeconfig, $KUBECONFIG), not in a cluster")},
		{name: "deploy: kubeconfig missing", args: args(deploy, []string{"--kubeconfig", "kubeconfig.yaml"}), want: usage("kubeconfig.yaml")},
		{name: "deploy: kubeconfig data garbage", args: args(deploy, []string{"--kubeconfig-data", "clusters: ["}), want: usage("parsing kubeconfig data: invalid: not a valid kubeconfig")},
		{name: "deploy: kube context missing", args: args(deploy, kube, []string{"--kube-context", "production"}), want: usage(`kube context "production" not found (available contexts: c)`)},

		// rollback.
		{name: "rollback: no environment", args: []string{"rollback"}, want: usage("--env: no environment given")},
		{name: "rollback: no image", args: []string{"rollback", "--env", "staging"}, want: usage(`--image "": give the image name the manifests use (e.g. web)`)},
		{name: "rollback: image reference for a name", args: []string{"rollback", "--env", "staging", "--image", "web:1.0"}, want: usage(`--image "web:1.0": give the image name`)},
		{name: "rollback: bad tag", args: []string{"rollback", "--env", "staging", "--image", "web", "--tag", "1 0"}, want: usage(`--tag "1 0"`)},
		{name: "rollback: overlay outside the repo", args: []string{"rollback", "--env", "staging", "--image", "web", "--path-template", "/{env}"}, want: usage("must stay inside the config repo")},
		{name: "rollback: automated", args: args([]string{"rollback", "--env", "staging", "--image", "web", "--no-apply", "--trigger", "automated"}, repo), want: usage(`rollback is a manual action; --trigger "automated" is not accepted`)},

		// promote.
		{name: "promote: no source", args: []string{"promote", "--to", "production"}, want: usage("--from: --env: no environment given")},
		{name: "promote: no target", args: []string{"promote", "--from", "staging"}, want: usage("--to: --env: no environment given")},
		{name: "promote: to itself", args: []string{"promote", "--from", "staging", "--to", "staging"}, want: usage(`--from and --to are both "staging"`)},
		{name: "promote: bad target", args: []string{"promote", "--from", "staging", "--to", "prod uction"}, want: usage(`--to: --env "prod uction"`)},
		{name: "promote: no config repo", args: []string{"promote", "--from", "staging", "--to", "production", "--no-apply"}, want: usage("--config-repo (or DELIVER_CONFIG_REPO) is required")},

		// lock and unlock.
		{name: "lock: no environment", args: []string{"lock", "--image", "web"}, want: usage("--env: no environment given")},
		{name: "lock: no image", args: []string{"lock", "--env", "staging"}, want: usage(`--image "": give the image name the manifests use (e.g. web)`)},
		{name: "lock: no config repo", args: []string{"lock", "--env", "staging", "--image", "web"}, want: usage("--config-repo (or DELIVER_CONFIG_REPO) is required")},
		{name: "lock: unknown trigger", args: args([]string{"lock", "--env", "staging", "--image", "web", "--trigger", "bot"}, repo), want: usage(`--trigger "bot"`)},
		{name: "unlock: image reference for a name", args: []string{"unlock", "--env", "staging", "--image", "web@sha256:0"}, want: usage(`--image "web@sha256:0": give the image name`)},
		{name: "unlock: bad environment", args: []string{"unlock", "--env", "..", "--image", "web"}, want: usage(`--env "..": must not contain ".."`)},

		// apply and diff.
		{name: "apply: no environment", args: []string{"apply"}, want: usage("--env: no environment given")},
		{name: "apply: no kubeconfig", args: args([]string{"apply", "--env", "staging"}, repo), want: usage("finding a kubeconfig")},
		{name: "apply: no config repo", args: args([]string{"apply", "--env", "staging"}, kube), want: usage("--config-repo (or DELIVER_CONFIG_REPO) is required")},
		{name: "apply: overlay outside the repo", args: args([]string{"apply", "--env", "staging", "--path-template", "../x/{env}"}, kube, repo), want: usage("must stay inside the config repo")},
		{name: "diff: bad environment", args: []string{"diff", "--env", "staging!"}, want: usage(`--env "staging!"`)},
		{name: "diff: no rollout time", args: args([]string{"diff", "--env", "staging", "--timeout", "-1s"}, kube, repo), want: usage("--timeout must be positive")},

		// history.
		{name: "history: no environment", args: []string{"history"}, want: usage("--env: no environment given")},
		{name: "history: no limit", args: []string{"history", "--env", "staging", "--limit", "0"}, want: usage("--limit must be at least 1")},
		{name: "history: no config repo", args: []string{"history", "--env", "staging"}, want: usage("--config-repo (or DELIVER_CONFIG_REPO) is required")},

		// set-image.
		{name: "set-image: no image", args: []string{"set-image"}, want: usage("set-image: no image given (want NAME=NEWNAME:TAG@DIGEST arguments)")},
		{name: "set-image: invalid image", args: []string{"set-image", "web=reg/web:1 2"}, want: usage(`set-image "web=reg/web:1 2"`)},
		{name: "set-image: no kustomization", args: []string{"set-image", "web=reg/web:1"}, want: usage("no kustomization file (looked for kustomization.yaml, kustomization.yml, Kustomization)")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.want.check(t, run(t, tt.env, tt.args...))
		})
	}
}

// TestHelp: deliver's help and each command's, as golden files; help is not an error.
func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
	}{
		{"deliver", []string{"--help"}},
		{"deliver", []string{"-h"}},
		{"deploy", []string{"--help", "deploy"}},
	}
	for _, cmd := range []string{"deploy", "rollback", "promote", "lock", "unlock", "apply", "diff", "history", "set-image", "version"} {
		tests = append(tests, struct {
			name string
			args []string
		}{cmd, []string{cmd, "--help"}})
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			want{code: 0, stdout: `^NAME:\n`, stderr: `^$`, golden: "help/" + tt.name + ".txt"}.check(t, run(t, nil, tt.args...))
		})
	}
}

// TestVersion: version and --version print the version on stdout.
func TestVersion(t *testing.T) {
	t.Parallel()
	want{code: 0, stdout: `^` + regexp.QuoteMeta(step.Version()) + `\n$`, stderr: `^$`}.check(t, run(t, nil, "version"))
	want{code: 0, stdout: `^deliver version ` + regexp.QuoteMeta(step.Version()) + `\n$`, stderr: `^$`}.check(t, run(t, nil, "--version"))
}

// TestSetImagePaths: set-image's --dir, and its default ".", are relative to the working
// directory the run is given; the result line says what it set, and a second run changes
// nothing.
func TestSetImagePaths(t *testing.T) {
	t.Parallel()
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	kustomization := "resources:\n  - web.yaml\nimages:\n  - name: web # the web app\n    newTag: \"1.0\"\n"
	dir := t.TempDir()
	fixture.WriteFiles(t, dir, map[string]string{"kustomization.yaml": kustomization, "overlays/staging/kustomization.yaml": kustomization})
	tests := []struct {
		name string
		args []string
		file string
		want want
	}{
		{"default directory", []string{"set-image", "web=registry.example.com/team/web:1.4.2@" + digest}, "kustomization.yaml",
			want{code: 0, stdout: `^set-image changed=true web=registry.example.com/team/web:1.4.2@` + digest + `\n$`}},
		{"again: nothing to do", []string{"set-image", "web=registry.example.com/team/web:1.4.2@" + digest}, "kustomization.yaml",
			want{code: 0, stdout: `^set-image changed=false web=registry.example.com/team/web:1.4.2@` + digest + `\n$`}},
		{"relative --dir", []string{"set-image", "--dir", "overlays/staging", "web:1.5"}, "overlays/staging/kustomization.yaml",
			want{code: 0, stdout: `^set-image changed=true web=web:1.5\n$`}},
		{"--dir from the variable", []string{"set-image", "web=*:1.6"}, "overlays/staging/kustomization.yaml",
			want{code: 0, stdout: `^set-image changed=true web=web:1.6\n$`}},
	}
	for _, tt := range tests {
		var env []string
		if strings.HasPrefix(tt.name, "--dir from") {
			env = []string{"DELIVER_DIR=overlays/staging"}
		}
		r := runIn(t, dir, env, tt.args...)
		tt.want.check(t, r)
		if b, err := os.ReadFile(filepath.Join(dir, tt.file)); err != nil || !strings.Contains(string(b), "  - name: web # the web app\n") {
			t.Errorf("%s: %s after the edit: %q, %v", tt.name, tt.file, b, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "overlays/staging/kustomization.yaml")); !strings.Contains(string(b), `newTag: "1.6"`) {
		t.Errorf("overlays/staging/kustomization.yaml:\n%s", b)
	}
}

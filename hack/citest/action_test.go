package citest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/ci"
)

// actionMeta is the part of action.yml the runner reads for a docker action.
type actionMeta struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	Branding    struct {
		Icon  string `yaml:"icon"`
		Color string `yaml:"color"`
	} `yaml:"branding"`
	Inputs map[string]struct {
		Description string  `yaml:"description"`
		Required    bool    `yaml:"required"`
		Default     *string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Description string `yaml:"description"`
	} `yaml:"outputs"`
	Runs struct {
		Using string            `yaml:"using"`
		Image string            `yaml:"image"`
		Args  []string          `yaml:"args"`
		Env   map[string]string `yaml:"env"`
	} `yaml:"runs"`
}

func loadAction(t testing.TB) *actionMeta {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var a actionMeta
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	return &a
}

// expr matches a GitHub expression.
var expr = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

// evaluate substitutes the expressions of action.yml the runner would: inputs.NAME (the value
// given in `with:`, else the input's default) and github.token. Anything else is an error: the
// test must be able to reproduce what the runner passes.
func (a *actionMeta) evaluate(s string, with map[string]string, githubToken string) (string, error) {
	var errs []error
	out := expr.ReplaceAllStringFunc(s, func(m string) string {
		e := expr.FindStringSubmatch(m)[1]
		switch {
		case e == "github.token":
			return githubToken
		case strings.HasPrefix(e, "inputs."):
			name := strings.TrimPrefix(e, "inputs.")
			v, err := a.input(name, with, githubToken)
			if err != nil {
				errs = append(errs, err)
			}
			return v
		}
		errs = append(errs, fmt.Errorf("unsupported expression %q", m))
		return ""
	})
	return out, errors.Join(errs...)
}

// input is the value the runner gives an input: the step's `with:` value, else its default
// (itself evaluated).
func (a *actionMeta) input(name string, with map[string]string, githubToken string) (string, error) {
	for k, in := range a.Inputs {
		if !strings.EqualFold(k, name) {
			continue
		}
		if v, ok := with[k]; ok {
			return v, nil
		}
		if in.Default == nil {
			return "", nil
		}
		return a.evaluate(*in.Default, nil, githubToken)
	}
	return "", fmt.Errorf("no input %q in action.yml", name)
}

// containerEnv is the environment and arguments the runner gives a docker action's container
// for one step, as actions/runner's ContainerActionHandler builds it: the job's environment
// (jobEnv: env: of the workflow, job and step, and GITHUB_ENV), INPUT_<NAME> for every input
// (uppercased, spaces to underscores, hyphens kept, as Handler.AddInputsToEnvironment does),
// then runs.env evaluated, each variable only where the job's environment has not set it,
// and the args of runs.args evaluated.
func (a *actionMeta) containerEnv(t testing.TB, with map[string]string, jobEnv []string, githubToken string) (env, args []string) {
	t.Helper()
	for k := range with {
		if _, ok := a.Inputs[k]; !ok {
			t.Fatalf("the step passes %q, which action.yml does not declare", k)
		}
	}
	set := map[string]bool{}
	for _, kv := range jobEnv {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	env = append(env, jobEnv...)
	names := make([]string, 0, len(a.Inputs))
	for k := range a.Inputs {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		v, err := a.input(k, with, githubToken)
		if err != nil {
			t.Fatal(err)
		}
		env = append(env, ci.InputVar(k)+"="+v)
	}
	keys := make([]string, 0, len(a.Runs.Env))
	for k := range a.Runs.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := a.evaluate(a.Runs.Env[k], with, githubToken)
		if err != nil {
			t.Fatalf("runs.env.%s: %v", k, err)
		}
		if !set[k] {
			env = append(env, k+"="+v)
		}
	}
	for i, arg := range a.Runs.Args {
		v, err := a.evaluate(arg, with, githubToken)
		if err != nil {
			t.Fatalf("runs.args[%d]: %v", i, err)
		}
		args = append(args, v)
	}
	return env, args
}

// cliFlag is a flag as `deliver CMD --help` shows it.
type cliFlag struct {
	command, name, def string
	kind               string // string, bool, int, duration, list
}

// cliFlags reads the flags of the action's commands from deliver's help, keyed by env var.
func cliFlags(t testing.TB, commands []string) map[string][]cliFlag {
	t.Helper()
	line := regexp.MustCompile(`^\s*--([a-z0-9-]+)(?:,\s*-\S+)?( value( \[ --\S+ value \])?)?\s.*?(?:\(default: ("(?:[^"\\]|\\.)*"|[^\s()"]+)\))?\s*\[\$(DELIVER_[A-Z0-9_]+)\]\s*$`)
	flags := map[string][]cliFlag{}
	for _, cmd := range append([]string{""}, commands...) {
		args := []string{"--help"}
		if cmd != "" {
			args = []string{cmd, "--help"}
		}
		out, err := exec.Command(deliver(t), args...).CombinedOutput()
		if err != nil {
			t.Fatalf("deliver %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			m := line.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			f := cliFlag{command: cmd, name: m[1], kind: "bool"}
			switch {
			case m[3] != "":
				f.kind = "list"
			case m[2] != "":
				f.kind = "string"
			}
			def := m[4]
			if unq, err := strconv.Unquote(def); err == nil {
				def = unq
			} else if f.kind == "string" && def != "" {
				if _, err := time.ParseDuration(def); err == nil {
					f.kind = "duration"
				} else if _, err := strconv.Atoi(def); err == nil {
					f.kind = "int"
				}
			}
			if f.kind == "bool" && def == "" {
				def = "false"
			}
			f.def = def
			flags[m[5]] = append(flags[m[5]], f)
		}
	}
	if len(flags) < 20 {
		t.Fatalf("read only %d flags from deliver's help: has its format changed?", len(flags))
	}
	return flags
}

// actionCommands are the commands action.yml offers (its command input's description).
var actionCommands = []string{"deploy", "rollback", "promote", "apply", "diff", "lock", "unlock"}

// TestActionMetadata checks action.yml against deliver's CLI: a docker action with the
// required keys; underscore input names (hyphenated ones never reach a shell and are easy to
// misspell in env mappings); every input mapped through runs.env to a DELIVER_* variable that
// one of the commands reads, with a default equal to the CLI's default — an input left out
// still arrives, as its default, and any default but the CLI's (or empty, which deliver reads
// as unset) would override the CLI's own — and the declared outputs equal to the ones deliver
// writes.
func TestActionMetadata(t *testing.T) {
	t.Parallel()
	a := loadAction(t)
	if a.Name == "" || a.Description == "" {
		t.Error("action.yml needs name and description")
	}
	if a.Runs.Using != "docker" || a.Runs.Image == "" {
		t.Errorf("runs: using %q image %q, want a docker action", a.Runs.Using, a.Runs.Image)
	}
	if a.Runs.Image != "Dockerfile" && !regexp.MustCompile(`^docker://ghcr\.io/deliverhq/deliver@sha256:[0-9a-f]{64}$`).MatchString(a.Runs.Image) {
		t.Errorf("runs.image %q: want Dockerfile or docker://ghcr.io/deliverhq/deliver@sha256:<digest>", a.Runs.Image)
	}
	if a.Branding.Icon == "" || a.Branding.Color == "" {
		t.Error("action.yml needs branding (icon and color)")
	}
	if len(a.Runs.Args) != 1 || a.Runs.Args[0] != "${{ inputs.command }}" {
		t.Errorf("runs.args %q, want [${{ inputs.command }}]", a.Runs.Args)
	}
	flags := cliFlags(t, actionCommands)
	mapped := map[string]string{} // input -> env var
	for k, v := range a.Runs.Env {
		m := regexp.MustCompile(`^\$\{\{ inputs\.([a-z0-9_]+) \}\}$`).FindStringSubmatch(v)
		if m == nil {
			t.Errorf("runs.env.%s = %q: want exactly ${{ inputs.NAME }}", k, v)
			continue
		}
		if prev, dup := mapped[m[1]]; dup {
			t.Errorf("input %s is mapped twice (%s, %s)", m[1], prev, k)
		}
		mapped[m[1]] = k
	}
	for name, in := range a.Inputs {
		if !regexp.MustCompile(`^[a-z][a-z0-9_]*$`).MatchString(name) {
			t.Errorf("input %q: use lower-case underscore names (hyphens stay in INPUT_ names, which shells cannot read)", name)
		}
		if strings.TrimSpace(in.Description) == "" {
			t.Errorf("input %s has no description", name)
		}
		if in.Default == nil && !in.Required {
			t.Errorf("input %s has no default: give it the CLI's default", name)
		}
		if name == "command" {
			if in.Default == nil || *in.Default != "deploy" {
				t.Errorf("input command: default %v, want deploy", in.Default)
			}
			continue
		}
		envVar, ok := mapped[name]
		if !ok {
			t.Errorf("input %s is not mapped in runs.env", name)
			continue
		}
		if envVar == "GITHUB_TOKEN" {
			if in.Default == nil || *in.Default != "${{ github.token }}" {
				t.Errorf("input %s: default %v, want ${{ github.token }}", name, in.Default)
			}
			continue
		}
		fs, ok := flags[envVar]
		if !ok {
			t.Errorf("input %s maps to %s, which no command of %v reads", name, envVar, actionCommands)
			continue
		}
		def := ""
		if in.Default != nil {
			def = *in.Default
		}
		for _, f := range fs {
			if !sameDefault(f, def) {
				t.Errorf("input %s: default %q, but deliver %s --%s defaults to %q (%s): an input left out would change the CLI's behaviour",
					name, def, f.command, f.name, f.def, f.kind)
			}
		}
	}
	// deliver's own list of the inputs (it reads them from INPUT_<NAME> to make them win over
	// the job's DELIVER_* variables) is action.yml's.
	known := map[string]bool{"command": true}
	for _, in := range ci.ActionInputs() {
		known[in.Name] = true
		def := ""
		if d := a.Inputs[in.Name].Default; d != nil {
			def = *d
		}
		if _, ok := a.Inputs[in.Name]; !ok || mapped[in.Name] != in.Env || def != in.Default {
			t.Errorf("ci.ActionInputs has %s -> %s (default %q); action.yml maps it to %q (default %q)", in.Name, in.Env, in.Default, mapped[in.Name], def)
		}
	}
	for name := range a.Inputs {
		if !known[name] {
			t.Errorf("input %s is missing from ci.ActionInputs", name)
		}
	}
	// Outputs: what the GitHub reporter writes (the contract test checks the written ones too).
	want := []string{"changed", "commit-sha", "commit-url", "diff", "image", "image-digest", "images", "pull-request-number", "pull-request-url", "rollout", "url"}
	var got []string
	for k, o := range a.Outputs {
		got = append(got, k)
		if o.Description == "" {
			t.Errorf("output %s has no description", k)
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("outputs %v, want %v", got, want)
	}
}

// sameDefault says whether an action default means the same as a CLI default.
func sameDefault(f cliFlag, def string) bool {
	switch f.kind {
	case "bool":
		a, err1 := strconv.ParseBool(def)
		b, err2 := strconv.ParseBool(f.def)
		return err1 == nil && err2 == nil && a == b
	case "duration":
		a, err1 := time.ParseDuration(def)
		b, err2 := time.ParseDuration(f.def)
		return err1 == nil && err2 == nil && a == b
	case "int":
		return def == f.def
	}
	return def == f.def
}

// githubRun is one run of the action as the runner would do it.
type githubRun struct {
	code    int
	log     string // stdout and stderr, interleaved as the runner reads them
	outputs map[string]string
	summary string
}

// runAction runs deliver with the environment a docker action's container gets for a step
// with the given `with:` inputs, in a job whose environment (env: of the workflow, job or
// step, GITHUB_ENV) holds jobEnv.
func runAction(t *testing.T, with map[string]string, jobEnv ...string) githubRun {
	t.Helper()
	a := loadAction(t)
	githubToken := sentinel(t, "github-token")
	dir := t.TempDir()
	outFile, summaryFile := filepath.Join(dir, "output"), filepath.Join(dir, "summary")
	for _, f := range []string{outFile, summaryFile} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	home, workspace := filepath.Join(dir, "home"), filepath.Join(dir, "workspace")
	for _, d := range []string{home, workspace} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env, args := a.containerEnv(t, with, append(cleanEnv(home,
		"GITHUB_ACTIONS=true", "CI=true",
		"GITHUB_REPOSITORY=acme/web", "GITHUB_SHA=4f2a9c1d7e0b8a6f5c3d2e1f0a9b8c7d6e5f4a3b",
		"GITHUB_RUN_ID=4242", "GITHUB_SERVER_URL=https://github.com", "GITHUB_ACTOR=octocat",
		"GITHUB_EVENT_NAME=push", "GITHUB_WORKSPACE="+workspace,
		"GITHUB_OUTPUT="+outFile, "GITHUB_STEP_SUMMARY="+summaryFile,
		"RUNNER_TEMP="+dir),
		jobEnv...), githubToken)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, deliver(t), args...)
	cmd.Dir, cmd.Env = workspace, env
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	err := cmd.Run()
	r := githubRun{log: log.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running deliver: %v", err)
	}
	outputs, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if r.outputs, err = parseOutputFile(string(outputs)); err != nil {
		t.Fatalf("GITHUB_OUTPUT: %v\n%s", err, outputs)
	}
	for k := range a.Outputs {
		if _, ok := r.outputs[k]; !ok {
			t.Errorf("output %s, declared in action.yml, was not written", k)
		}
	}
	for k := range r.outputs {
		if _, ok := a.Outputs[k]; !ok {
			t.Errorf("output %s was written, but action.yml does not declare it", k)
		}
	}
	summary, err := os.ReadFile(summaryFile)
	if err != nil {
		t.Fatal(err)
	}
	r.summary = string(summary)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("deliver %s exited %d; log:\n%s\noutputs: %v\nsummary:\n%s", strings.Join(args, " "), r.code, r.log, r.outputs, r.summary)
		}
	})
	return r
}

// parseOutputFile parses a GITHUB_OUTPUT file: NAME=VALUE lines and NAME<<DELIMITER blocks.
func parseOutputFile(s string) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			var val []string
			closed := false
			for sc.Scan() {
				if sc.Text() == delim {
					closed = true
					break
				}
				val = append(val, sc.Text())
			}
			if !closed {
				return nil, fmt.Errorf("output %s: delimiter %s never closes", name, delim)
			}
			out[name] = strings.Join(val, "\n")
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		out[name] = val
	}
	return out, sc.Err()
}

// checkSecrets checks that every secret was masked with ::add-mask:: before any other line of
// the log, and shows nowhere but in those lines: not in the log, the outputs or the summary.
func checkSecrets(t *testing.T, r githubRun, secrets map[string]string) {
	t.Helper()
	lines := strings.Split(r.log, "\n")
	masks := 0
	for masks < len(lines) && strings.HasPrefix(lines[masks], "::add-mask::") {
		masks++
	}
	maskText := strings.Join(lines[:masks], "\n")
	rest := strings.Join(lines[masks:], "\n")
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("secret %s is empty", what)
		}
		if s = strings.TrimSpace(s); !strings.Contains(maskText, escapeCommandData(s)) && !strings.Contains(maskText, s) {
			t.Errorf("%s is not masked (::add-mask::) before the first other line of output", what)
		}
		if strings.Contains(rest, s) {
			t.Errorf("%s shows in the log outside ::add-mask::", what)
		}
		for k, v := range r.outputs {
			if strings.Contains(v, s) {
				t.Errorf("%s shows in output %s", what, k)
			}
		}
		if strings.Contains(r.summary, s) {
			t.Errorf("%s shows in the job summary", what)
		}
	}
	if strings.Contains(rest, "::add-mask::") {
		t.Errorf("::add-mask:: after other output: a secret may already have been printed")
	}
}

// escapeCommandData escapes a workflow command's data as the runner expects.
func escapeCommandData(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// checkGroups checks that every phase is a log group and groups are balanced.
func checkGroups(t *testing.T, log string, phases ...string) {
	t.Helper()
	depth := 0
	seen := map[string]bool{}
	for _, l := range strings.Split(log, "\n") {
		switch {
		case strings.HasPrefix(l, "::group::"):
			if depth != 0 {
				t.Errorf("nested ::group:: %q", l)
			}
			depth++
			name, _, _ := strings.Cut(strings.TrimPrefix(l, "::group::"), ":")
			seen[name] = true
		case strings.HasPrefix(l, "::endgroup::"):
			depth--
			if depth < 0 {
				t.Errorf("::endgroup:: without ::group::")
			}
		}
	}
	if depth != 0 {
		t.Errorf("%d ::group:: left open", depth)
	}
	for _, p := range phases {
		if !seen[p] {
			t.Errorf("no ::group:: for phase %s (groups: %v)", p, seen)
		}
	}
}

// githubFixture is what a contract test runs the action against.
type githubFixture struct {
	git     *testenv.GitServer
	reg     *testenv.Registry
	repo    *configRepo
	digest  string
	image   string // NAME=REF as the images input takes it
	gitPass string
	regPass string
}

func newGitHubFixture(t *testing.T) *githubFixture {
	t.Helper()
	f := &githubFixture{gitPass: sentinel(t, "git-token"), regPass: sentinel(t, "registry-password")}
	f.git = testenv.NewGitServer(t, testenv.WithCredentials("deliver-ci", f.gitPass))
	f.reg = testenv.NewRegistry(t, testenv.WithBasicAuth("ci", f.regPass))
	f.repo = newConfigRepo(t, f.git, "acme/config")
	var err error
	if f.digest, err = f.reg.PushRandomImage("team/web", "1.1.0"); err != nil {
		t.Fatal(err)
	}
	f.image = "web=" + f.reg.Ref("team/web", "1.1.0")
	return f
}

// with is the `with:` of a deploy step against the fixture.
func (f *githubFixture) with(extra map[string]string) map[string]string {
	w := map[string]string{
		"environment":       "staging",
		"images":            f.image,
		"config_repo":       f.repo.URL,
		"git_username":      "deliver-ci",
		"token":             f.gitPass,
		"registry_username": "ci",
		"registry_password": f.regPass,
		"env_url":           "https://staging.example.test",
	}
	for k, v := range extra {
		w[k] = v
	}
	return w
}

// TestActionContract runs deliver exactly as GitHub's runner runs the docker action, and checks
// what a workflow sees: the step outputs, the job summary, the log groups, the masks and the
// config repo and cluster state.
func TestActionContract(t *testing.T) {
	t.Parallel()

	// no_apply: the config repo changes, nothing needs a cluster: the kubeconfig points at a
	// port nobody listens on, and carries a sentinel token that must be masked.
	t.Run("no_apply", func(t *testing.T) {
		t.Parallel()
		f := newGitHubFixture(t)
		before := f.repo.Head(t)
		kubeToken := sentinel(t, "kube-token")
		kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: %s}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, kubeToken)
		r := runAction(t, f.with(map[string]string{"no_apply": "true", "kubeconfig": kubeconfig}))
		if r.code != 0 {
			t.Fatalf("exit code %d, want 0", r.code)
		}
		head := f.repo.Head(t)
		if head == before {
			t.Fatal("the config repo has no new commit")
		}
		wantOutputs(t, r.outputs, map[string]string{
			"changed": "true", "commit-sha": head, "image-digest": f.digest,
			"image": f.reg.Ref("team/web", "1.1.0") + "@" + f.digest, "url": "https://staging.example.test",
		})
		if r.outputs["rollout"] != "" && r.outputs["rollout"] != "skipped" {
			t.Errorf("output rollout %q with no_apply", r.outputs["rollout"])
		}
		wantSummary(t, r.summary, "staging", f.digest)
		checkGroups(t, r.log, "verify", "clone", "push")
		checkSecrets(t, r, map[string]string{"token": f.gitPass, "registry_password": f.regPass, "kubeconfig token": kubeToken})
		kust := f.repo.File(t, "overlays/staging/kustomization.yaml")
		if !strings.Contains(kust, f.digest) || !strings.Contains(kust, f.reg.Host+"/team/web") {
			t.Errorf("overlays/staging/kustomization.yaml does not pin %s:\n%s", f.digest, kust)
		}

		// The same step again: nothing to change, no commit, changed=false.
		r2 := runAction(t, f.with(map[string]string{"no_apply": "true", "kubeconfig": kubeconfig}))
		if r2.code != 0 {
			t.Fatalf("second run: exit code %d, want 0", r2.code)
		}
		if f.repo.Head(t) != head {
			t.Error("second run: the config repo got another commit")
		}
		wantOutputs(t, r2.outputs, map[string]string{"changed": "false", "commit-sha": head, "image-digest": f.digest})
	})

	// dry_run, as .github/workflows/test-action.yml runs it: nothing pushed, the digest known.
	t.Run("dry_run", func(t *testing.T) {
		t.Parallel()
		f := newGitHubFixture(t)
		before := f.repo.Head(t)
		r := runAction(t, f.with(map[string]string{"dry_run": "true", "no_apply": "true", "trigger": "automated"}))
		if r.code != 0 {
			t.Fatalf("exit code %d, want 0", r.code)
		}
		if f.repo.Head(t) != before {
			t.Error("dry run pushed a commit")
		}
		// changed says the overlay would change; there is no commit to name.
		wantOutputs(t, r.outputs, map[string]string{"changed": "true", "commit-sha": "", "image-digest": f.digest})
		// The diff output is the overlay's diff, and the summary says it is a dry run.
		if !strings.HasPrefix(r.outputs["diff"], "--- a/overlays/staging/kustomization.yaml\n+++ b/overlays/staging/kustomization.yaml\n") ||
			!strings.Contains(r.outputs["diff"], "\n+    digest: "+f.digest+"\n") {
			t.Errorf("output diff:\n%s", r.outputs["diff"])
		}
		if !strings.Contains(r.summary, "dry run: nothing was pushed or applied") || !strings.Contains(r.summary, "```diff\n"+r.outputs["diff"]) ||
			strings.Contains(r.summary, "succeeded") {
			t.Errorf("the job summary does not say it is a dry run with its diff:\n%s", r.summary)
		}
		checkSecrets(t, r, map[string]string{"token": f.gitPass, "registry_password": f.regPass})
	})

	// The job's environment sets DELIVER_* variables too (env: of the workflow, job or step,
	// or GITHUB_ENV). The runner then leaves runs.env's variables alone, so without deliver
	// reading the inputs themselves DELIVER_ENV=production would replace environment: staging
	// (and production, automated: false, would refuse this push run), and the wrong token
	// would replace the token input. An input left at its default gives way to the variable:
	// DELIVER_DIGEST_PIN=false of the job turns digest pinning off.
	t.Run("job_env", func(t *testing.T) {
		t.Parallel()
		f := newGitHubFixture(t)
		prod := f.repo.File(t, "overlays/production/kustomization.yaml")
		wrongToken := sentinel(t, "wrong-token")
		r := runAction(t, f.with(map[string]string{"no_apply": "true"}),
			"DELIVER_ENV=production", "DELIVER_GIT_TOKEN="+wrongToken, "DELIVER_DIGEST_PIN=false")
		if r.code != 0 {
			t.Fatalf("exit code %d, want 0", r.code)
		}
		kust := f.repo.File(t, "overlays/staging/kustomization.yaml")
		if !strings.Contains(kust, `newTag: "1.1.0"`) || strings.Contains(kust, f.digest) {
			t.Errorf("staging: want tag 1.1.0 without its digest (DELIVER_DIGEST_PIN=false):\n%s", kust)
		}
		if f.repo.File(t, "overlays/production/kustomization.yaml") != prod {
			t.Error("production, the job's DELIVER_ENV, changed")
		}
		for _, want := range []string{
			"::warning::the environment input is used, not DELIVER_ENV, which the job's environment",
			"::warning::the token input is used, not DELIVER_GIT_TOKEN",
			"digest_pin: DELIVER_DIGEST_PIN from the job's environment is used (the digest_pin input is left at its default)",
		} {
			if !strings.Contains(r.log, want) {
				t.Errorf("the log lacks %q", want)
			}
		}
		checkSecrets(t, r, map[string]string{"token": f.gitPass, "registry_password": f.regPass, "the job's DELIVER_GIT_TOKEN": wrongToken})
	})

	// Bad input: a usage error is exit code 2 with an ::error:: annotation.
	t.Run("bad_input", func(t *testing.T) {
		t.Parallel()
		f := newGitHubFixture(t)
		r := runAction(t, f.with(map[string]string{"environment": "../etc", "no_apply": "true"}))
		if r.code != 2 {
			t.Errorf("exit code %d, want 2", r.code)
		}
		if !regexp.MustCompile(`(?m)^::error( [^:]*)?::`).MatchString(r.log) {
			t.Error("no ::error:: annotation")
		}
		checkSecrets(t, r, map[string]string{"token": f.gitPass, "registry_password": f.regPass})
	})

	// The whole step with every default: apply to the shared cluster, wait until the pods are
	// ready (wait defaults to true), digest pinned (digest_pin defaults to true).
	t.Run("apply", func(t *testing.T) {
		t.Parallel()
		cluster := testenv.SharedCluster(t)
		f := newGitHubFixture(t)
		kubeconfig, err := os.ReadFile(cluster.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		r := runAction(t, f.with(map[string]string{"kubeconfig": string(kubeconfig), "timeout": "90s"}))
		if r.code != 0 {
			t.Fatalf("exit code %d, want 0", r.code)
		}
		t.Logf("deploy with apply and wait took %s", time.Since(start).Round(10*time.Millisecond))
		wantOutputs(t, r.outputs, map[string]string{"changed": "true", "commit-sha": f.repo.Head(t), "image-digest": f.digest})
		if r.outputs["rollout"] == "" {
			t.Error("output rollout is empty after an apply")
		}
		wantSummary(t, r.summary, "staging", f.digest)
		// What a reviewer wants: the image before and after, the source commit and the run,
		// who triggered it, and the rollout per object.
		for _, want := range []string{
			"| web | `registry.example.com/team/web:1.0.0` | `" + f.reg.Ref("team/web", "1.1.0") + "@" + f.digest + "` |",
			"| Source commit | [4f2a9c1d7e0b](https://github.com/acme/web/commit/4f2a9c1d7e0b8a6f5c3d2e1f0a9b8c7d6e5f4a3b) |",
			"| Pipeline | [https://github.com/acme/web/actions/runs/4242](https://github.com/acme/web/actions/runs/4242) |",
			"| Trigger | automated (push) by octocat |",
			"| Deployment/" + f.repo.Namespaces["staging"] + "/web | created | 2/2 ready |",
		} {
			if !strings.Contains(r.summary, want) {
				t.Errorf("the job summary lacks %q:\n%s", want, r.summary)
			}
		}
		var images []ci.Image
		if err := json.Unmarshal([]byte(r.outputs["images"]), &images); err != nil || len(images) != 1 ||
			images[0] != (ci.Image{Name: "web", Image: f.reg.Ref("team/web", "1.1.0") + "@" + f.digest, Digest: f.digest, Previous: "registry.example.com/team/web:1.0.0"}) {
			t.Errorf("output images %q (%v)", r.outputs["images"], err)
		}
		checkGroups(t, r.log, "verify", "clone", "push", "apply")
		// Only the kubeconfig's credentials are masked: masking every line would star the server
		// and namespace names in the rest of the job's log.
		checkSecrets(t, r, map[string]string{"token": f.gitPass, "registry_password": f.regPass,
			"the kubeconfig's client-key-data": kubeconfigKey(t, kubeconfig)})
		image, ready := runningImage(t, cluster, f.repo.Namespaces["staging"])
		if want := f.reg.Ref("team/web", "1.1.0") + "@" + f.digest; image != want {
			t.Errorf("the Deployment runs %s, want %s", image, want)
		}
		if ready != "2/2" {
			t.Errorf("%s pods ready, want 2/2", ready)
		}
	})
}

func wantOutputs(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("output %s = %q, want %q", k, got[k], v)
		}
	}
}

// wantSummary checks the job summary is a markdown table naming the environment and digest.
func wantSummary(t *testing.T, summary, env, digest string) {
	t.Helper()
	if !regexp.MustCompile(`(?m)^\|\s*-+\s*\|\s*-+\s*\|$`).MatchString(summary) {
		t.Errorf("the job summary has no markdown table:\n%s", summary)
	}
	if !regexp.MustCompile(`(?m)^\|\s*Environment\s*\|\s*` + regexp.QuoteMeta(env) + `\s*\|$`).MatchString(summary) {
		t.Errorf("the job summary has no Environment row for %s:\n%s", env, summary)
	}
	if !strings.Contains(summary, digest) {
		t.Errorf("the job summary does not show the digest %s:\n%s", digest, summary)
	}
}

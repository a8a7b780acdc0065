package citest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// actionlintModule is the pinned actionlint, run with `go run` so that go.mod stays clean.
const actionlintModule = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"

// workflowFiles are the GitHub workflow files actionlint and action-validator check.
func workflowFiles(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	var files []string
	for _, pattern := range []string{".github/workflows/*.yml", ".github/workflows/*.yaml", "examples/github/*.yml", "examples/github/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	var hasTest, hasExample bool
	for _, f := range files {
		hasTest = hasTest || strings.HasSuffix(f, filepath.FromSlash(".github/workflows/test-action.yml"))
		hasExample = hasExample || strings.HasSuffix(f, filepath.FromSlash("examples/github/app-workflow.yml"))
	}
	if !hasTest || !hasExample {
		t.Fatalf("expected .github/workflows/test-action.yml and examples/github/app-workflow.yml among %v", files)
	}
	return files
}

// TestActionlint runs actionlint on every workflow; through .github/workflows/test-action.yml
// (uses: ./) it also checks action.yml: its keys, branding, the inputs the workflow passes
// and the outputs it reads.
func TestActionlint(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	files := workflowFiles(t)
	args := []string{"run", actionlintModule, "-shellcheck=", "-pyflakes=", "-no-color"}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		args = append(args, rel)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// The real environment (the go command's own settings live under HOME), plus
	// GOFLAGS=-mod=mod: `go run pkg@version` never touches this module's go.mod anyway, and an
	// inherited -mod=vendor would make it fail.
	env := append(os.Environ(), "GOFLAGS=-mod=mod")
	start := time.Now()
	out, err := run(ctx, root, env, "go", args...)
	if err != nil {
		t.Fatalf("actionlint %s: %v\n%s", strings.Join(args[len(args)-len(files):], " "), err, out)
	}
	t.Logf("actionlint v1.7.12: %d workflow files clean in %s", len(files), time.Since(start).Round(10*time.Millisecond))

	// The linter must really be looking: a call of the action with an unknown input, reading
	// an unknown output, is an error. actionlint resolves uses: ./ against the project holding
	// the workflow, so the bad workflow gets a project of its own with a copy of action.yml.
	bad := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bad, ".github", "workflows"), 0o755); err != nil {
		t.Fatal(err)
	}
	action, err := os.ReadFile(filepath.Join(root, "action.yml"))
	if err != nil {
		t.Fatal(err)
	}
	wf := `on: push
jobs:
  x:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: d
        uses: ./
        with:
          config_repo: https://example.com/c.git
          no_such_input: x
      - run: echo "${{ steps.d.outputs.no-such-output }}"
`
	for name, content := range map[string][]byte{"action.yml": action, ".github/workflows/bad.yml": []byte(wf)} {
		if err := os.WriteFile(filepath.Join(bad, filepath.FromSlash(name)), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run(ctx, bad, env, "git", "init", "-q"); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	out, err = run(ctx, bad, env, "go", "run", actionlintModule, "-shellcheck=", "-pyflakes=", "-no-color", ".github/workflows/bad.yml")
	if err == nil || !strings.Contains(out, "no_such_input") || !strings.Contains(out, "no-such-output") {
		t.Fatalf("actionlint did not flag an unknown input and an unknown output of action.yml: %v\n%s", err, out)
	}
}

// TestActionValidator runs @action-validator/cli 0.6.0 (SchemaStore's github-action and
// github-workflow schemas) on action.yml and every workflow.
func TestActionValidator(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	node := nodeBin(t)
	cli := tool(t, "@action-validator/cli/cli.mjs")
	tool(t, "@action-validator/core/package.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := cleanEnv(t.TempDir())
	validate := func(file string) (string, error) {
		return run(ctx, root, env, node, cli, file)
	}
	if out, err := validate(filepath.Join(root, "action.yml")); err != nil {
		t.Errorf("action-validator action.yml: %v\n%s", err, out)
	}
	// The workflow schema of action-validator 0.6.0 predates the `attestations` permission
	// (actions/attest-build-provenance needs attestations: write); actionlint, which knows it,
	// checks that line. The validator checks a copy without it.
	schemaGap := regexp.MustCompile(`(?m)^\s+attestations: write\b.*\n`)
	for _, f := range workflowFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// action-validator picks the schema by file name: anything ending in action.yml is an
		// action to it, test-action.yml included. Validate a copy named as a workflow.
		check := f
		if strings.HasSuffix(f, "action.yml") || strings.HasSuffix(f, "action.yaml") || schemaGap.Match(data) {
			check = filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))+".workflow.yml")
			if err := os.WriteFile(check, schemaGap.ReplaceAll(data, nil), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := validate(check); err != nil {
			t.Errorf("action-validator %s: %v\n%s", f, err, out)
		}
	}
	// And it must reject a broken action.
	broken := filepath.Join(t.TempDir(), "action.yml")
	if err := os.WriteFile(broken, []byte("name: x\ndescription: y\nruns:\n  using: dockerr\n  image: Dockerfile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := validate(broken); err == nil {
		t.Errorf("action-validator accepted runs.using: dockerr\n%s", out)
	}
}

// TestDockerfile checks what GitHub and GitLab need of the image's Dockerfile: a final stage
// with a /bin/sh (the GitLab runner pipes the job script into it), no USER (GitHub runs
// container actions as the image's user and needs root for its file commands), no WORKDIR
// (GitHub sets the workspace as the working directory), and an exec-form ENTRYPOINT to the
// binary (inputs reach it unchanged, no shell in between).
func TestDockerfile(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	type instr struct{ cmd, args string }
	var stages [][]instr
	// Join continuation lines, drop comments.
	text := regexp.MustCompile(`\\\r?\n`).ReplaceAllString(string(data), " ")
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			if cmd != "ARG" {
				t.Fatalf("Dockerfile: %s before the first FROM", cmd)
			}
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], instr{cmd, strings.TrimSpace(args)})
	}
	if len(stages) == 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	stageNames := map[string][]instr{}
	for _, s := range stages {
		if f := strings.Fields(s[0].args); len(f) == 3 && strings.EqualFold(f[1], "AS") {
			stageNames[strings.ToLower(f[2])] = s
		}
	}
	final := stages[len(stages)-1]
	var entrypoints []string
	shell := false
	base := strings.Fields(final[0].args)[0]
	shellBases := regexp.MustCompile(`^(busybox|alpine|debian|ubuntu)(:|@|$)|:debug(-nonroot)?(@|$)`)
	if shellBases.MatchString(base) {
		shell = true
	}
	for _, in := range stages[len(stages)-1] {
		switch in.cmd {
		case "USER":
			t.Errorf("final stage sets USER %s: GitHub container actions must run as root", in.args)
		case "WORKDIR":
			t.Errorf("final stage sets WORKDIR %s: GitHub makes /github/workspace the working directory", in.args)
		case "ENTRYPOINT":
			entrypoints = append(entrypoints, in.args)
		case "COPY":
			// A COPY from a stage that installs busybox-static and links /bin/sh brings a shell.
			m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.args)
			if m == nil {
				continue
			}
			src := stageNames[strings.ToLower(m[1])]
			var installs, links bool
			for _, s := range src {
				installs = installs || (s.cmd == "RUN" && strings.Contains(s.args, "busybox-static"))
				links = links || (s.cmd == "RUN" && regexp.MustCompile(`ln -s\S* busybox \S*/bin/sh\b`).MatchString(s.args))
			}
			shell = shell || (installs && links)
		}
	}
	if !shell {
		t.Errorf("final stage (FROM %s) has no /bin/sh: GitLab pipes the job script into the image's shell", base)
	}
	if len(entrypoints) != 1 {
		t.Fatalf("final stage has %d ENTRYPOINT instructions, want 1", len(entrypoints))
	}
	if want := `["/usr/local/bin/deliver"]`; entrypoints[0] != want {
		t.Errorf("ENTRYPOINT %s, want the exec form %s", entrypoints[0], want)
	}
	// The build stage: static, reproducible, versioned.
	all := string(data)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X github.com/deliverhq/deliver/step.version=", "ca-certificates", "SSL_CERT_FILE="} {
		if !strings.Contains(all, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// .dockerignore keeps the context small and secrets out.
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", "bin", "node_modules"} {
		if !strings.Contains(string(ignore), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

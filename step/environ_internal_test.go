package step

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// flagValues runs a one-command app whose flags read their variables through getenv, with
// args, and returns what the command saw, or the error.
func flagValues(t *testing.T, getenv func(string) string, args ...string) (map[string]any, error) {
	t.Helper()
	var got map[string]any
	flags := []cli.Flag{
		&cli.StringFlag{Name: "branch", EnvVars: env("branch"), Value: "main"},
		&cli.BoolFlag{Name: "wait", EnvVars: env("wait"), Value: true},
		&cli.IntFlag{Name: "attempts", EnvVars: env("attempts"), Value: 60},
		&cli.DurationFlag{Name: "timeout", EnvVars: env("timeout"), Value: time.Minute},
		&cli.StringSliceFlag{Name: "image", EnvVars: env("image")},
		&cli.StringFlag{Name: "plain"}, // no variable: left as it is
	}
	app := &cli.App{
		Writer: &bytes.Buffer{}, ErrWriter: &bytes.Buffer{}, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{{
			Name:            "cmd",
			HideHelpCommand: true, // as Main's commands (see runner.app)
			Flags:           withEnv(flags, getenv),
			Action: func(c *cli.Context) error {
				got = map[string]any{
					"branch": c.String("branch"), "wait": c.Bool("wait"), "attempts": c.Int("attempts"),
					"timeout": c.Duration("timeout"), "image": c.StringSlice("image"),
					"branch set": c.IsSet("branch"), "image set": c.IsSet("image"),
				}
				return nil
			},
		}},
	}
	err := app.RunContext(context.Background(), append([]string{"deliver", "cmd"}, args...))
	return got, err
}

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestEnvFlags(t *testing.T) {
	t.Parallel()
	defaults := map[string]any{"branch": "main", "wait": true, "attempts": 60, "timeout": time.Minute, "image": []string(nil), "branch set": false, "image set": false}
	with := func(changes map[string]any) map[string]any {
		m := map[string]any{}
		for k, v := range defaults {
			m[k] = v
		}
		for k, v := range changes {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want map[string]any
	}{
		{name: "defaults", want: defaults},
		{name: "from the environment",
			env:  map[string]string{"DELIVER_BRANCH": "release", "DELIVER_WAIT": "false", "DELIVER_ATTEMPTS": "0x10", "DELIVER_TIMEOUT": "90s", "DELIVER_IMAGE": "a=x:1, b=y:2"},
			want: with(map[string]any{"branch": "release", "wait": false, "attempts": 16, "timeout": 90 * time.Second, "image": []string{"a=x:1", "b=y:2"}, "branch set": true, "image set": true})},
		{name: "the command line wins",
			env:  map[string]string{"DELIVER_BRANCH": "release", "DELIVER_WAIT": "false", "DELIVER_IMAGE": "a=x:1,b=y:2"},
			args: []string{"--branch", "hotfix", "--wait=true", "--image", "c=z:3"},
			// A list on the command line replaces the environment's, as urfave/cli does.
			want: with(map[string]any{"branch": "hotfix", "image": []string{"c=z:3"}, "branch set": true, "image set": true})},
		{name: "an empty variable counts as unset",
			env:  map[string]string{"DELIVER_BRANCH": "", "DELIVER_WAIT": "", "DELIVER_IMAGE": ""},
			want: defaults},
		{name: "other variables are not flags", env: map[string]string{"BRANCH": "x", "DELIVER_PLAIN": "x"}, want: defaults},
	}
	for _, tt := range tests {
		got, err := flagValues(t, mapEnv(tt.env), tt.args...)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, %v\nwant %v", tt.name, got, err, tt.want)
		}
	}
}

func TestEnvFlagErrors(t *testing.T) {
	t.Parallel()
	tests := []struct{ env, value, want string }{
		{"DELIVER_WAIT", "yes please", `could not parse "yes please" as bool value from environment variable "DELIVER_WAIT" for flag wait: strconv.ParseBool`},
		{"DELIVER_ATTEMPTS", "many", `could not parse "many" as int value from environment variable "DELIVER_ATTEMPTS" for flag attempts: strconv.ParseInt`},
		{"DELIVER_TIMEOUT", "5", `could not parse "5" as duration value from environment variable "DELIVER_TIMEOUT" for flag timeout: time: missing unit`},
	}
	for _, tt := range tests {
		_, err := flagValues(t, mapEnv(map[string]string{tt.env: tt.value}))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s=%q: %v, want an error saying %q", tt.env, tt.value, err, tt.want)
		}
	}
}

// TestEnvFlagsNotFromProcess: the flags read the run's environment, never the process's (the
// test sets the process's, so it cannot run in parallel with others).
func TestEnvFlagsNotFromProcess(t *testing.T) {
	t.Setenv("DELIVER_BRANCH", "from-the-process")
	t.Setenv("DELIVER_IMAGE", "p=process:1")
	got, err := flagValues(t, mapEnv(nil))
	if err != nil || got["branch"] != "main" || got["image"] != nil && len(got["image"].([]string)) > 0 {
		t.Errorf("the flags read the process's environment: %v, %v", got, err)
	}
	got, err = flagValues(t, mapEnv(map[string]string{"DELIVER_BRANCH": "from-the-run"}))
	if err != nil || got["branch"] != "from-the-run" {
		t.Errorf("the run's environment: %v, %v", got, err)
	}
}

// TestEnvFlagHelp: help still names each flag's variable and shows its default, not the value
// the environment gave.
func TestEnvFlagHelp(t *testing.T) {
	t.Parallel()
	flags := withEnv([]cli.Flag{
		&cli.StringFlag{Name: "branch", EnvVars: env("branch"), Value: "main", Usage: "the branch"},
		&cli.StringSliceFlag{Name: "image", EnvVars: env("image"), Usage: "images"},
	}, mapEnv(map[string]string{"DELIVER_BRANCH": "secret-branch", "DELIVER_IMAGE": "secret=image:1"}))
	var out bytes.Buffer
	app := &cli.App{Name: "deliver", Writer: &out, ErrWriter: &out, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{{Name: "cmd", HideHelpCommand: true, Flags: flags, Action: func(*cli.Context) error { return nil }}}}
	if err := app.RunContext(context.Background(), []string{"deliver", "cmd", "--help"}); err != nil {
		t.Fatal(err)
	}
	help := out.String()
	for _, want := range []string{`--branch value`, `the branch (default: "main") [$DELIVER_BRANCH]`, `images [$DELIVER_IMAGE]`} {
		if !strings.Contains(help, want) {
			t.Errorf("help does not say %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "secret") {
		t.Errorf("help shows a value from the environment:\n%s", help)
	}
}

func TestWithEnvRefusesUnknownFlagTypes(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "--ratio is a *cli.Float64Flag") {
			t.Errorf("withEnv accepted a flag type it cannot read: %v", r)
		}
	}()
	withEnv([]cli.Flag{&cli.Float64Flag{Name: "ratio", EnvVars: env("ratio")}}, mapEnv(nil))
}

func TestRunnerPaths(t *testing.T) {
	t.Parallel()
	abs := filepath.Join(t.TempDir(), "x")
	r := &runner{dir: "/work/dir"}
	for _, tt := range []struct{ in, want string }{
		{"", ""},
		{".", "/work/dir"},
		{"deliver.env", "/work/dir/deliver.env"},
		{"../k/config", "/work/k/config"},
		{abs, abs},
	} {
		if got := r.path(tt.in); got != tt.want {
			t.Errorf("path(%q) in /work/dir = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := (&runner{}).path("deliver.env"); got != "deliver.env" {
		t.Errorf("without IO.Dir, path(deliver.env) = %q: want it left to the process's directory", got)
	}
	getenv := r.envIn(mapEnv(map[string]string{
		"KUBECONFIG": "a" + string(filepath.ListSeparator) + abs, "DOCKER_CONFIG": "docker", "TMPDIR": "/tmp",
		"HOME": "home", "DELIVER_DIR": "overlay", // not resolved: HOME is absolute by nature; flags resolve where they are read
	}))
	for _, tt := range []struct{ name, want string }{
		{"KUBECONFIG", "/work/dir/a" + string(filepath.ListSeparator) + abs},
		{"DOCKER_CONFIG", "/work/dir/docker"},
		{"TMPDIR", "/tmp"},
		{"HOME", "home"},
		{"DELIVER_DIR", "overlay"},
		{"UNSET", ""},
	} {
		if got := getenv(tt.name); got != tt.want {
			t.Errorf("getenv(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

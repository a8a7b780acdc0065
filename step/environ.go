// environ.go owns reading flags from the run's environment (DELIVER_* variables) and
// resolving paths against the run's working directory.

package step

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// This file keeps a run of Main to the environment it is given (IO): its variables and its
// working directory. Nothing a command does may depend on the process's own, so that two runs
// with different environments in one process (the in-process command tests, any program that
// embeds deliver) cannot see each other's settings.
//
// What is still read from the process, because a library reads it and offers no other way:
//   - go-git's SSH transport reads the process user's ~/.ssh/config (Hostname and Port,
//     through ssh_config's package variable, loaded once);
//   - net/http reads the proxy variables (HTTPS_PROXY, NO_PROXY, ...) once per process, for
//     the config repo, the registry and the cluster alike; client-go reads its request
//     backoff variables (KUBE_CLIENT_BACKOFF_BASE, KUBE_CLIENT_BACKOFF_DURATION);
//   - programs deliver may start run with the process's environment: the credential helpers a
//     docker config names (credsStore, credHelpers) and a kubeconfig's exec plugins, both
//     found on the process's PATH;
//   - with no TMPDIR in the run's environment, the clone goes to os.TempDir(), the process's.

// withEnv makes every flag of flags that has DELIVER_* variables read them through getenv
// (see envFlag). Every flag type the commands use is handled; another one is a programming
// error, caught by the command tests, which build every command.
func withEnv(flags []cli.Flag, getenv func(string) string) []cli.Flag {
	out := make([]cli.Flag, 0, len(flags))
	for _, f := range flags {
		df, ok := f.(envSourced)
		if !ok || len(df.GetEnvVars()) == 0 {
			out = append(out, f)
			continue
		}
		switch f.(type) {
		case *cli.StringFlag, *cli.BoolFlag, *cli.IntFlag, *cli.DurationFlag, *cli.StringSliceFlag:
		default:
			panic(fmt.Sprintf("step: flag --%s is a %T, which withEnv cannot read from the run's environment", f.Names()[0], f))
		}
		out = append(out, envFlag{envSourced: df, getenv: getenv})
	}
	return out
}

// envSourced is what urfave/cli asks of a flag besides applying it: help (DocGenerationFlag,
// CategorizableFlag), required flags and flag actions.
type envSourced interface {
	cli.DocGenerationFlag
	cli.CategorizableFlag
	cli.RequiredFlag
	cli.ActionableFlag
}

// envFlag is a flag whose DELIVER_* variables are read from the run's environment instead of
// the process's. urfave/cli v2 reads a flag's EnvVars itself, with syscall.Getenv, and offers
// no other source; envFlag hides them from it while the flag is applied to the flag set, then
// sets the value it finds through getenv, as urfave/cli would have (a value on the command
// line still wins). Help is the wrapped flag's, so it still names the variables.
//
// An empty variable counts as unset: getenv cannot tell the two apart, and CI systems pass
// inputs nobody gave as empty variables.
type envFlag struct {
	envSourced
	getenv func(string) string
}

func (f envFlag) Apply(set *flag.FlagSet) error {
	switch fl := f.envSourced.(type) {
	case *cli.StringSliceFlag:
		// The value from the environment becomes the flag's starting value, which values on
		// the command line replace (Set would append them to it instead).
		name, val := f.lookup(fl.EnvVars)
		envVars, value := fl.EnvVars, fl.Value
		fl.EnvVars = nil
		if name != "" {
			var items []string
			for _, s := range strings.Split(val, ",") {
				items = append(items, strings.TrimSpace(s))
			}
			fl.Value = cli.NewStringSlice(items...)
		}
		err := fl.Apply(set)
		fl.EnvVars, fl.Value = envVars, value // help shows the default, not the variable's value
		if name != "" {
			fl.HasBeenSet = true
		}
		return err
	case *cli.StringFlag:
		return f.applyScalar(set, &fl.EnvVars, &fl.HasBeenSet, "string", func(string) error { return nil })
	case *cli.BoolFlag:
		return f.applyScalar(set, &fl.EnvVars, &fl.HasBeenSet, "bool", func(v string) error { _, err := strconv.ParseBool(v); return err })
	case *cli.IntFlag:
		return f.applyScalar(set, &fl.EnvVars, &fl.HasBeenSet, "int", func(v string) error { _, err := strconv.ParseInt(v, 0, strconv.IntSize); return err })
	case *cli.DurationFlag:
		return f.applyScalar(set, &fl.EnvVars, &fl.HasBeenSet, "duration", func(v string) error { _, err := time.ParseDuration(v); return err })
	}
	return fmt.Errorf("flag --%s: %T cannot read the run's environment", f.Names()[0], f.envSourced)
}

// applyScalar applies the wrapped flag without its variables, then sets the value of the first
// one the environment holds, as the command line would (parse checks it first, for urfave/cli's
// message).
func (f envFlag) applyScalar(set *flag.FlagSet, envVars *[]string, hasBeenSet *bool, kind string, parse func(string) error) error {
	vars := *envVars
	*envVars = nil
	err := f.envSourced.Apply(set)
	*envVars = vars
	if err != nil {
		return err
	}
	name, val := f.lookup(vars)
	if name == "" {
		return nil
	}
	if err := parse(val); err != nil {
		return fmt.Errorf("could not parse %q as %s value from environment variable %q for flag %s: %w", val, kind, name, f.Names()[0], err)
	}
	for _, n := range f.Names() {
		if err := set.Set(n, val); err != nil {
			return fmt.Errorf("could not parse %q as %s value from environment variable %q for flag %s: %w", val, kind, name, f.Names()[0], err)
		}
	}
	*hasBeenSet = true
	return nil
}

// lookup returns the first of vars the environment holds, and its value.
func (f envFlag) lookup(vars []string) (name, value string) {
	for _, v := range vars {
		v = strings.TrimSpace(v)
		if val := f.getenv(v); val != "" {
			return v, val
		}
	}
	return "", ""
}

// sharedFlag is a flag urfave/cli v2 shares between every app and command of the process: its
// --help and --version, kept in package variables (cli.HelpFlag, cli.VersionFlag). Applying a
// *cli.BoolFlag writes to it, so two runs at once would race on them; sharedFlag applies a
// copy instead and leaves the shared one untouched.
type sharedFlag struct{ *cli.BoolFlag }

func (f sharedFlag) Apply(set *flag.FlagSet) error {
	c := *f.BoolFlag
	return c.Apply(set)
}

func init() {
	// The one write to urfave/cli's package variables, before any run: see sharedFlag.
	if f, ok := cli.HelpFlag.(*cli.BoolFlag); ok {
		cli.HelpFlag = sharedFlag{f}
	}
	if f, ok := cli.VersionFlag.(*cli.BoolFlag); ok {
		cli.VersionFlag = sharedFlag{f}
	}
}

// path resolves a path given to a run (a flag, a default, a variable naming a file) against
// the run's working directory, IO.Dir; absolute paths, and every path when IO.Dir is empty,
// are left as they are.
func (r *runner) path(p string) string {
	if p == "" || r.dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(r.dir, p)
}

// isPathVar tells the variables of the environment that name files or directories (lists,
// for KUBECONFIG and SSH_KNOWN_HOSTS), which envIn resolves against IO.Dir.
func isPathVar(name string) bool {
	switch name {
	case "KUBECONFIG", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "SSH_KNOWN_HOSTS", "XDG_CONFIG_HOME",
		"GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "TMPDIR":
		return true
	}
	return false
}

// envIn returns getenv with the variables isPathVar names resolved against r.dir.
func (r *runner) envIn(getenv func(string) string) func(string) string {
	if r.dir == "" {
		return getenv
	}
	return func(name string) string {
		v := getenv(name)
		if v == "" || !isPathVar(name) {
			return v
		}
		parts := filepath.SplitList(v)
		for i, p := range parts {
			parts[i] = r.path(p)
		}
		return strings.Join(parts, string(filepath.ListSeparator))
	}
}

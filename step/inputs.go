// inputs.go owns the GitHub Action's and GitLab component's inputs, mapped onto flags.

package step

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
)

// App-wide flags of the CI reports.
const (
	flagDotenv       = "dotenv"
	flagDotenvPrefix = "dotenv-prefix"
	flagReport       = "report"
)

// actionInputs makes the GitHub Action's inputs win over DELIVER_* variables the job's
// environment sets to something else (ci.ActionOverrides) before the command reads its
// flags: an input given a value other than its default is set on the flag, with a warning;
// one left at its default gives way to the variable, with a log line. What to say is returned
// as a func, to be called once the reporter exists (it masks the inputs' secrets first). The
// error is a value the flag refuses, named by its input.
func (r *runner) actionInputs(c *cli.Context) (tell func(ci.Reporter), err error) {
	var said []func(ci.Reporter)
	tell = func(rep ci.Reporter) {
		for _, s := range said {
			s(rep)
		}
	}
	if r.ci.Provider != ci.ProviderGitHub || !r.ci.Action {
		return tell, nil
	}
	for _, o := range ci.ActionOverrides(r.getenv) {
		flag, ok := flagForVariable(c.Command.Flags, o.Input.Env)
		if !ok {
			continue // an input this command does not read
		}
		in, env := o.Input.Name, o.Input.Env
		if !o.Use {
			said = append(said, func(rep ci.Reporter) {
				rep.Logf("%s: %s from the job's environment is used (the %s input is left at its default)", in, env, in)
			})
			continue
		}
		if err := c.Set(flag, o.Value); err != nil {
			return tell, usage(fmt.Errorf("input %s: %w", in, err))
		}
		said = append(said, func(rep ci.Reporter) {
			rep.Warnf("the %s input is used, not %s, which the job's environment (env: of the workflow, job or step, or GITHUB_ENV) sets to another value", in, env)
		})
	}
	return tell, nil
}

// flagForVariable returns the name of the flag among flags that reads variable env.
func flagForVariable(flags []cli.Flag, env string) (string, bool) {
	for _, f := range flags {
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok && slices.Contains(ev.GetEnvVars(), env) {
			return f.Names()[0], true
		}
	}
	return "", false
}

// flagVariables reports whether a variable is one deliver reads as a flag, in any command.
func flagVariables(app *cli.App) func(string) bool {
	vars := map[string]bool{}
	add := func(flags []cli.Flag) {
		for _, f := range flags {
			if ev, ok := f.(interface{ GetEnvVars() []string }); ok {
				for _, v := range ev.GetEnvVars() {
					vars[v] = true
				}
			}
		}
	}
	add(app.Flags)
	for _, cmd := range app.Commands {
		add(cmd.Flags)
	}
	return func(v string) bool { return vars[v] }
}

var dotenvPrefix = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validDotenvPrefix checks --dotenv-prefix: empty, or the start of a variable name.
func validDotenvPrefix(p string) error {
	if p != "" && !dotenvPrefix.MatchString(p) {
		return usage(fmt.Errorf("--%s %q: want the start of a variable name (letters, digits and _, not starting with a digit)", flagDotenvPrefix, p))
	}
	return nil
}

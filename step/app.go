// Package step is deliver's command line: it binds and validates flags (each also read from a
// DELIVER_* environment variable), and runs the commands (deploy, rollback, promote, lock,
// set-image, ...) by orchestrating the packages that do the work: registry (verify and pin
// images), configrepo (clone, commit, push with retry, the queue), the kustomize package (edit,
// confine and build overlays), policy (deliver.yaml: locks, rules, the downgrade guard), release
// (the records in commit messages), cluster (apply, prune, wait), engine (the hand-off to Flux),
// forge (pull requests), signing (commit signatures) and ci (the CI context and reporting).
// Main runs one invocation in-process, reading only its IO, and returns the exit code (ExitCode
// maps an error to it); it never exits the process.
package step

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/redact"
)

// version is set at build time with -ldflags "-X github.com/deliverhq/deliver/step.version=v1.2.3".
var version = "dev"

// Version returns deliver's version.
func Version() string { return version }

// IO is what one run of the app reads and writes. A run reads nothing else from the process
// (see environ.go for what libraries still do).
type IO struct {
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv in production): the DELIVER_* variables of the
	// flags, the CI's variables, HOME, KUBECONFIG, DOCKER_CONFIG, SSH_KNOWN_HOSTS, TMPDIR. An
	// empty variable counts as unset.
	Getenv func(string) string
	// Dir is the working directory: relative paths in flags and variables, and the defaults
	// that are relative paths (set-image's --dir ., GitLab's deliver.env), resolve against it.
	// Empty means the process's working directory.
	Dir string
}

// runner carries one invocation's dependencies to the commands.
type runner struct {
	stdout, stderr io.Writer
	// rawStderr is the unredacted stream, used only for GitHub's ::add-mask:: commands.
	rawStderr io.Writer
	getenv    func(string) string
	dir       string // IO.Dir
	redactor  *redact.Redactor
	ci        ci.Context
	rep       ci.Reporter
	// hints names options the way the user sets them (flags, action inputs, CI variables).
	hints hints
	// checkout is the command's clone of the config repo, for the report; nil before it.
	checkout *checkout
	finish   func() // flushes the redacting writers
	// builds renders the queued changes of other runs this run lands: rendered one on top
	// of the other, they differ only in their images, and it builds the rest once.
	builds kustomize.Builder
}

// Main runs the app with args (os.Args) and returns the process exit code. Every byte written
// to stdout and stderr goes through the run's redactor.
func Main(ctx context.Context, args []string, stdio IO) int {
	if stdio.Getenv == nil {
		stdio.Getenv = func(string) string { return "" }
	}
	red := redact.New()
	outW, errW := red.Writer(stdio.Stdout), red.Writer(stdio.Stderr)
	r := &runner{stdout: outW, stderr: errW, rawStderr: stdio.Stderr, dir: stdio.Dir, redactor: red}
	r.getenv = r.envIn(stdio.Getenv)
	r.ci = ci.Detect(r.getenv)
	if r.ci.Action {
		r.getenv = ci.ActionEnv(r.getenv)
	}
	r.finish = func() { _ = outW.Flush(); _ = errW.Flush() }
	defer r.finish()
	if ctx.Err() != nil {
		// Interrupted before it began (a signal during the process's start-up): nothing was
		// done, and the exit code says interrupted, as for a signal at any later moment.
		fmt.Fprintf(errW, "deliver: error: interrupted before starting (%v): nothing was done\n", context.Cause(ctx))
		return ExitInterrupted
	}
	err := r.app().RunContext(ctx, args)
	if err != nil {
		err = red.Error(err)
		if r.ci.Provider == ci.ProviderGitLab {
			// GitLab shows the job's last lines; make the failure stand out in red.
			fmt.Fprintf(errW, "\x1b[31;1mdeliver: error: %v\x1b[0m\n", err)
		} else {
			fmt.Fprintf(errW, "deliver: error: %v\n", err)
		}
	}
	if err != nil && ctx.Err() != nil {
		// A signal (or the caller) cancelled the run: whatever failed, it failed because of that.
		return ExitInterrupted
	}
	return ExitCode(err)
}

func (r *runner) app() *cli.App {
	app := r.newApp()
	for _, cmd := range app.Commands {
		// A bad flag is bad input: say so on stderr with the command's name, exit 2, no help dump.
		cmd.OnUsageError = func(c *cli.Context, err error, _ bool) error {
			return usage(fmt.Errorf("%s: %w (see deliver %s --help)", c.Command.Name, explainFlagValue(c.Command.Flags, err), c.Command.Name))
		}
		// urfave/cli's "help" subcommand is one Command shared by the whole process, which
		// every run would write to (see sharedFlag); --help is the way.
		cmd.HideHelpCommand = true
		cmd.Flags = withEnv(cmd.Flags, r.getenv)
	}
	app.Flags = withEnv(app.Flags, r.getenv)
	return app
}

func (r *runner) newApp() *cli.App {
	return &cli.App{
		Name:    "deliver",
		Usage:   "ship a container image to Kubernetes through a GitOps config repo",
		Version: version,
		Description: "deliver verifies an image, pins its digest in an environment's kustomize overlay in the " +
			"config repo (commit and push, retried on concurrent pushes, never lost), then applies that " +
			"overlay to the cluster and waits for the rollout. Every flag can also be given as the " +
			"DELIVER_* environment variable shown in its help.",
		Writer:          r.stdout,
		ErrWriter:       r.stderr,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: flagDotenv, EnvVars: env(flagDotenv), Usage: "GitLab: where to write the dotenv report (default deliver.env in GitLab CI)"},
			&cli.StringFlag{Name: flagDotenvPrefix, EnvVars: env(flagDotenvPrefix), Usage: "GitLab: prefix of the job's own copy of the dotenv keys (default DELIVER_<ENV>_, as in DELIVER_STAGING_COMMIT_SHA)"},
			&cli.StringFlag{Name: flagReport, EnvVars: env(flagReport), Usage: "write the outcome as JSON to this file: images before and after, config commit, rollout per object, a dry run's diff (for later CI jobs)"},
		},
		// Only Main decides the exit code (ExitCode); urfave/cli must not call os.Exit from
		// inside Run.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usage(err)
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usage(fmt.Errorf("%w %q; run deliver --help for the list", errUnknownCommand, c.Args().First()))
			}
			_ = cli.ShowAppHelp(c)
			return usage(errors.New("no command given"))
		},
		Commands: append([]*cli.Command{
			r.deployCommand(),
			r.rollbackCommand(),
			r.promoteCommand(),
			r.applyCommand(),
			r.diffCommand(),
			r.historyCommand(),
			r.setImageCommand(),
			r.versionCommand(),
		}, r.lockCommands()...),
	}
}

func (r *runner) versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print deliver's version",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usage(fmt.Errorf("version takes no arguments, got %q", c.Args().First()))
			}
			fmt.Fprintln(r.stdout, version)
			return nil
		},
	}
}

// reporter chooses how progress and results are shown: GitHub Actions, GitLab CI or plain.
func (r *runner) reporter(c *cli.Context) ci.Reporter {
	switch r.ci.Provider {
	case ci.ProviderGitHub:
		return ci.NewGitHub(r.stderr, r.rawStderr, r.getenv, r.redactor.Secrets())
	case ci.ProviderGitLab:
		dotenv := c.String(flagDotenv)
		if dotenv == "" {
			dotenv = "deliver.env"
		}
		return ci.NewGitLab(r.stderr, ci.Dotenv{Path: r.path(dotenv), Prefix: c.String(flagDotenvPrefix), Reserved: flagVariables(c.App)}, r.redactor.String)
	}
	return ci.NewPlain(r.stderr)
}

// errUnknownCommand is returned when the first argument is not a command.
var errUnknownCommand = errors.New("unknown command")

// splitList splits repeated flag values that may each hold several entries separated by
// commas, newlines or spaces (how CI inputs pass lists).
func splitList(values []string) []string {
	var out []string
	for _, v := range values {
		out = append(out, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' || r == '\t' })...)
	}
	return out
}

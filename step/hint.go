// hint.go owns hints that name flags the way the run sets them (flag, DELIVER_* variable or
// action input).

package step

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
)

// hintStyle is how the user sets deliver's options where it runs.
type hintStyle int

const (
	// styleFlags: on the command line (a terminal, a run: step, a script).
	styleFlags hintStyle = iota
	// styleAction: the GitHub Action's inputs, and DELIVER_* variables for the flags no input
	// covers.
	styleAction
	// styleVariables: GitLab CI/CD variables (the template and the component read them too).
	styleVariables
)

// hints names deliver's options the way the user sets them where deliver runs: a flag on the
// command line (--force), an input of the GitHub Action (force: true), a CI/CD variable in
// GitLab (DELIVER_FORCE=true). Every hint in an error, warning or log line goes through it:
// deliver's own messages call set and command, and rewrite turns the --flag mentions left in
// any message (from deliver and the packages it uses) into the same names.
type hints struct {
	style hintStyle
	flags map[string]flagHint // by flag name
}

type flagHint struct {
	env    string // DELIVER_*
	isBool bool
}

// newHints builds the hints of a command with flags, for a run in CI context run.
func newHints(run ci.Context, flags []cli.Flag) hints {
	h := hints{style: styleFlags, flags: map[string]flagHint{}}
	switch {
	case run.Provider == ci.ProviderGitHub && run.Action:
		h.style = styleAction
	case run.Provider == ci.ProviderGitLab:
		h.style = styleVariables
	}
	for _, f := range flags {
		ev, ok := f.(interface{ GetEnvVars() []string })
		if !ok || len(ev.GetEnvVars()) == 0 {
			continue
		}
		_, isBool := f.(*cli.BoolFlag)
		for _, name := range f.Names() {
			h.flags[name] = flagHint{env: ev.GetEnvVars()[0], isBool: isBool}
		}
	}
	return h
}

// name names an option without a value: --kube-context, kube_context, DELIVER_KUBE_CONTEXT.
func (h hints) name(flag string) string {
	f, ok := h.flags[flag]
	switch {
	case !ok || h.style == styleFlags:
		return "--" + flag
	case h.style == styleAction:
		if in, ok := ci.ActionInputFor(f.env); ok {
			return in.Name
		}
	}
	return f.env
}

// set names an option with its value: --trigger manual, trigger: manual,
// DELIVER_TRIGGER=manual; a bool flag set to true is --force on the command line.
func (h hints) set(flag, value string) string {
	f, ok := h.flags[flag]
	switch {
	case !ok || h.style == styleFlags:
		if ok && f.isBool && value == "true" {
			return "--" + flag
		}
		return "--" + flag + " " + value
	case h.style == styleAction:
		if in, ok := ci.ActionInputFor(f.env); ok {
			return in.Name + ": " + value
		}
	}
	return f.env + "=" + value
}

// command names a run of deliver's command cmd with options (flag, value pairs): `deliver
// unlock --env staging --image web`, the action's command: unlock with environment: staging,
// images: web, or deliver unlock with DELIVER_ENV=staging, DELIVER_IMAGE=web.
func (h hints) command(cmd string, options ...string) string {
	var parts []string
	for i := 0; i+1 < len(options); i += 2 {
		parts = append(parts, h.set(options[i], options[i+1]))
	}
	switch h.style {
	case styleAction:
		return fmt.Sprintf("the action with command: %s, %s", cmd, strings.Join(parts, ", "))
	case styleVariables:
		return fmt.Sprintf("deliver %s with %s", cmd, strings.Join(parts, ", "))
	}
	return fmt.Sprintf("`deliver %s %s`", cmd, strings.Join(parts, " "))
}

// flagMention is a --flag (or --flag=value) in a message, after the start, a space or an
// opening bracket or quote, with what follows it when that is " (or DELIVER_...)".
var flagMention = regexp.MustCompile("(^|[\\s(\\[,;'`])--([a-z][a-z0-9-]*)(?:=([^\\s),;'`]+))?( \\(or DELIVER_[A-Z0-9_]+\\))?")

// rewrite turns the mentions of the command's flags in msg into the names the user sets:
// --force-conflicts becomes force_conflicts: true (action) or DELIVER_FORCE_CONFLICTS=true
// (GitLab), --kube-context kube_context or DELIVER_KUBE_CONTEXT, --on-failure=revert
// on_failure: revert; "--config-repo (or DELIVER_CONFIG_REPO)" says it once. On the command
// line msg is left as it is.
func (h hints) rewrite(msg string) string {
	if h.style == styleFlags || !strings.Contains(msg, "--") {
		return msg
	}
	return flagMention.ReplaceAllStringFunc(msg, func(m string) string {
		sub := flagMention.FindStringSubmatch(m)
		lead, flag, value, or := sub[1], sub[2], sub[3], sub[4]
		f, ok := h.flags[flag]
		if !ok || slices.Contains([]string{"help", "version"}, flag) {
			return m
		}
		if or != "" && or != " (or "+f.env+")" {
			return lead + h.name(flag) + or
		}
		switch {
		case value != "":
			return lead + h.set(flag, value)
		case f.isBool:
			return lead + h.set(flag, "true")
		}
		return lead + h.name(flag)
	})
}

// hintReporter passes the warnings and log lines of a command through its hints.
type hintReporter struct {
	ci.Reporter
	hints hints
}

func (h hintReporter) Warnf(format string, args ...any) {
	h.Reporter.Warnf("%s", h.hints.rewrite(fmt.Sprintf(format, args...)))
}

func (h hintReporter) Logf(format string, args ...any) {
	h.Reporter.Logf("%s", h.hints.rewrite(fmt.Sprintf(format, args...)))
}

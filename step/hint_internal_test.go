package step

import (
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/deliverhq/deliver/step/ci"
)

// TestHints: in CI the hints name what the user sets there: the GitHub Action's inputs (a
// DELIVER_* variable for a flag no input covers), GitLab CI/CD variables, the flags on the
// command line and in a workflow's run: step.
func TestHints(t *testing.T) {
	t.Parallel()
	flags := append(append(releaseFlags(), configRepoFlags()...), clusterFlags()...)
	flags = append(flags, &cli.StringFlag{Name: flagEnv, EnvVars: env(flagEnv)}, &cli.StringSliceFlag{Name: flagImage, EnvVars: env(flagImage)})
	tests := []struct {
		name                            string
		runs                            []ci.Context
		set, command, rewrite, required string
	}{
		{
			name: "command line and github run: step", runs: []ci.Context{{}, {Provider: ci.ProviderGitHub}},
			set: "--trigger manual", command: "`deliver unlock --env staging --image web`",
			rewrite:  "rerun with --force-conflicts (no --kube-context given; --on-failure=revert); --force",
			required: "--config-repo (or DELIVER_CONFIG_REPO) is required",
		},
		{
			name: "github action", runs: []ci.Context{{Provider: ci.ProviderGitHub, Action: true}},
			set: "trigger: manual", command: "the action with command: unlock, environment: staging, images: web",
			rewrite:  "rerun with force_conflicts: true (no kube_context given; on_failure: revert); force: true",
			required: "config_repo is required",
		},
		{
			name: "gitlab", runs: []ci.Context{{Provider: ci.ProviderGitLab}},
			set: "DELIVER_TRIGGER=manual", command: "deliver unlock with DELIVER_ENV=staging, DELIVER_IMAGE=web",
			rewrite:  "rerun with DELIVER_FORCE_CONFLICTS=true (no DELIVER_KUBE_CONTEXT given; DELIVER_ON_FAILURE=revert); DELIVER_FORCE=true",
			required: "DELIVER_CONFIG_REPO is required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, run := range tt.runs {
				checkHints(t, newHints(run, flags), tt.set, tt.command, tt.rewrite, tt.required)
			}
		})
	}
	// Only the command's flags, only as flags: values, other tools' flags and words stay.
	h := newHints(ci.Context{Provider: ci.ProviderGitLab}, flags)
	for _, s := range []string{"kubectl apply --server-side", "see deliver deploy --help", "a--force", "x --forced"} {
		if got := h.rewrite(s); got != s {
			t.Errorf("rewrite(%q) = %q, want it unchanged", s, got)
		}
	}
	if got, want := h.rewrite(`--env "--force": not a name`), `DELIVER_ENV "--force": not a name`; got != want {
		t.Errorf("rewrite = %q, want %q", got, want)
	}
}

func checkHints(t *testing.T, h hints, set, command, rewrite, required string) {
	t.Helper()
	if got := h.set(flagTrigger, "manual"); got != set {
		t.Errorf("set = %q, want %q", got, set)
	}
	if got := h.command("unlock", flagEnv, "staging", flagImage, "web"); got != command {
		t.Errorf("command = %q, want %q", got, command)
	}
	if got := h.rewrite("rerun with --force-conflicts (no --kube-context given; --on-failure=revert); --force"); got != rewrite {
		t.Errorf("rewrite = %q, want %q", got, rewrite)
	}
	if got := h.rewrite("--config-repo (or DELIVER_CONFIG_REPO) is required"); got != required {
		t.Errorf("rewrite = %q, want %q", got, required)
	}
}

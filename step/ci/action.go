package ci

import "strings"

// ActionInput is one input of deliver's GitHub Action (action.yml): its name, the variable
// its runs.env sets from it (the DELIVER_* variable of a flag, or GITHUB_TOKEN), and its
// default. hack/citest checks this list against action.yml.
type ActionInput struct {
	Name, Env, Default string
}

// ActionInputs lists action.yml's inputs other than command (which is runs.args).
func ActionInputs() []ActionInput {
	return []ActionInput{
		{"environment", "DELIVER_ENV", ""},
		{"images", "DELIVER_IMAGE", ""},
		{"tag", "DELIVER_TAG", ""},
		{"from", "DELIVER_FROM", ""},
		{"to", "DELIVER_TO", ""},
		{"config_repo", "DELIVER_CONFIG_REPO", ""},
		{"branch", "DELIVER_BRANCH", "main"},
		{"path_template", "DELIVER_PATH_TEMPLATE", "overlays/{env}"},
		{"git_username", "DELIVER_GIT_USERNAME", ""},
		{"token", "DELIVER_GIT_TOKEN", ""},
		{"ssh_key", "DELIVER_SSH_KEY", ""},
		{"ssh_host_key", "DELIVER_SSH_HOST_KEY", ""},
		{"ssh_known_hosts", "DELIVER_SSH_KNOWN_HOSTS", ""},
		{"author_name", "DELIVER_AUTHOR_NAME", ""},
		{"author_email", "DELIVER_AUTHOR_EMAIL", ""},
		{"committer_name", "DELIVER_COMMITTER_NAME", ""},
		{"committer_email", "DELIVER_COMMITTER_EMAIL", ""},
		{"signing_key", "DELIVER_SIGNING_KEY", ""},
		{"signing_key_passphrase", "DELIVER_SIGNING_KEY_PASSPHRASE", ""},
		{"trigger", "DELIVER_TRIGGER", ""},
		{"reason", "DELIVER_REASON", ""},
		{"force", "DELIVER_FORCE", "false"},
		{"on_failure", "DELIVER_ON_FAILURE", "revert"},
		{"digest_pin", "DELIVER_DIGEST_PIN", "true"},
		{"dry_run", "DELIVER_DRY_RUN", "false"},
		{"no_apply", "DELIVER_NO_APPLY", "false"},
		{"env_url", "DELIVER_ENV_URL", ""},
		{"registry_username", "DELIVER_REGISTRY_USERNAME", ""},
		{"registry_password", "DELIVER_REGISTRY_PASSWORD", ""},
		{"github_token", "GITHUB_TOKEN", "${{ github.token }}"},
		{"kubeconfig", "DELIVER_KUBECONFIG_DATA", ""},
		{"kubeconfig_file", "DELIVER_KUBECONFIG", ""},
		{"kube_context", "DELIVER_KUBE_CONTEXT", ""},
		{"namespace", "DELIVER_NAMESPACE", ""},
		{"prune", "DELIVER_PRUNE", "false"},
		{"wait", "DELIVER_WAIT", "true"},
		{"timeout", "DELIVER_TIMEOUT", "5m"},
		{"force_conflicts", "DELIVER_FORCE_CONFLICTS", "false"},
		{"apply_via", "DELIVER_APPLY_VIA", ""},
		{"flux_kustomization", "DELIVER_FLUX_KUSTOMIZATION", ""},
		{"via", "DELIVER_VIA", ""},
		{"forge", "DELIVER_FORGE", ""},
		{"auto_merge", "DELIVER_AUTO_MERGE", "false"},
		{"merge_method", "DELIVER_MERGE_METHOD", "merge"},
		{"wait_merged", "DELIVER_WAIT_MERGED", "false"},
		{"merge_timeout", "DELIVER_MERGE_TIMEOUT", "1h"},
		{"report", "DELIVER_REPORT", ""},
	}
}

// InputVar is the variable the runner gives a docker action's input in: INPUT_ and the name
// upper-cased, spaces made underscores, hyphens kept (actions/runner, AddInputsToEnvironment).
func InputVar(name string) string {
	return "INPUT_" + strings.ToUpper(strings.ReplaceAll(name, " ", "_"))
}

// ActionInputFor returns the input of the action that sets variable env, if any.
func ActionInputFor(env string) (ActionInput, bool) {
	for _, in := range ActionInputs() {
		if in.Env == env {
			return in, true
		}
	}
	return ActionInput{}, false
}

// InputOverride is what the action's input of one variable says when the job's environment
// disagrees with it.
type InputOverride struct {
	Input ActionInput
	// Value is the input's value, to be used instead of the environment's (Use), or the
	// value that lost to the environment's.
	Value string
	// Use is true when the input wins: it was given a value other than its default.
	Use bool
}

// ActionOverrides resolves, for deliver running as the GitHub Action, the inputs that disagree
// with the DELIVER_* variable of the same meaning. The runner sets runs.env's variables only
// where the job's environment (workflow, job and step env:, GITHUB_ENV) has not set them, so a
// DELIVER_ENV of the workflow would silently replace the step's `environment:` input. Every
// input also arrives as INPUT_<NAME>, which nothing else sets: an input given a value other
// than its default wins (Use); an input left at its default gives way to the environment's
// variable, which stays the way to set deliver's flags for every step of a job. Variables that
// agree with their input, and GITHUB_TOKEN (always taken from the github_token input: see
// ActionEnv), are not listed.
func ActionOverrides(getenv func(string) string) []InputOverride {
	var out []InputOverride
	for _, in := range ActionInputs() {
		if in.Env == "GITHUB_TOKEN" {
			continue
		}
		v := getenv(InputVar(in.Name))
		if v == getenv(in.Env) {
			continue
		}
		out = append(out, InputOverride{Input: in, Value: v, Use: v != in.Default})
	}
	return out
}

// ActionEnv wraps getenv for deliver running as the GitHub Action: GITHUB_TOKEN is the
// github_token input's value (by default the workflow's token), whatever the job's
// environment calls GITHUB_TOKEN.
func ActionEnv(getenv func(string) string) func(string) string {
	return func(k string) string {
		if k == "GITHUB_TOKEN" {
			return getenv(InputVar("github_token"))
		}
		return getenv(k)
	}
}

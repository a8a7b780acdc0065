package ci

import (
	"reflect"
	"testing"
)

// TestActionOverrides: running as the action, an input given a value other than its default
// wins over a DELIVER_* variable of the job's environment; one left at its default gives way
// to it; variables that agree (runs.env filled them) are not listed.
func TestActionOverrides(t *testing.T) {
	t.Parallel()
	env := map[string]string{}
	// What runs.env gives when the job's environment sets none of them: every variable equal
	// to its input.
	for _, in := range ActionInputs() {
		env[InputVar(in.Name)] = in.Default
		env[in.Env] = in.Default
	}
	env["INPUT_ENVIRONMENT"], env["DELIVER_ENV"] = "staging", "staging"
	if got := ActionOverrides(func(k string) string { return env[k] }); len(got) != 0 {
		t.Fatalf("overrides without a disagreement: %+v", got)
	}
	// The workflow's env: sets DELIVER_ENV, DELIVER_BRANCH and DELIVER_GIT_TOKEN.
	env["DELIVER_ENV"] = "production"     // the input says staging: the input wins
	env["DELIVER_BRANCH"] = "release"     // the input is left at main: the variable is used
	env["DELIVER_GIT_TOKEN"] = "from-env" // the input is left empty: the variable is used
	env["GITHUB_TOKEN"] = "job-env-token" // never listed: ActionEnv takes the input
	env["INPUT_GITHUB_TOKEN"] = "input-token"
	got := ActionOverrides(func(k string) string { return env[k] })
	want := []InputOverride{
		{Input: ActionInput{"environment", "DELIVER_ENV", ""}, Value: "staging", Use: true},
		{Input: ActionInput{"branch", "DELIVER_BRANCH", "main"}, Value: "main"},
		{Input: ActionInput{"token", "DELIVER_GIT_TOKEN", ""}, Value: ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("overrides:\n%+v\nwant\n%+v", got, want)
	}
	if v := ActionEnv(func(k string) string { return env[k] })("GITHUB_TOKEN"); v != "input-token" {
		t.Errorf("GITHUB_TOKEN = %q, want the github_token input's", v)
	}
}

func TestDotenvPrefix(t *testing.T) {
	t.Parallel()
	for env, want := range map[string]string{"": "", "staging": "DELIVER_STAGING_", "eu-west.1": "DELIVER_EU_WEST_1_", "Prod_2": "DELIVER_PROD_2_"} {
		if got := DotenvPrefix(env); got != want {
			t.Errorf("DotenvPrefix(%q) = %q, want %q", env, got, want)
		}
	}
}

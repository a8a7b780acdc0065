// Package ci knows the CI system deliver runs in: it reads the variables GitLab CI and GitHub
// Actions set for a job (source repository, commit, pipeline URL, actor, what triggered the
// pipeline) into one provider-neutral Context, reads the GitHub Action's inputs (ActionInputs,
// ActionEnv), and reports progress and results the way each system shows them. The
// credentials and API addresses CI provides (CI_REGISTRY_PASSWORD, GITHUB_TOKEN, CI_API_V4_URL
// ...) are read where they are used: the registry's keychain, the forge client and step.
package ci

import "strings"

// Provider names the CI system.
type Provider string

// The providers deliver knows.
const (
	ProviderNone   Provider = ""
	ProviderGitHub Provider = "github"
	ProviderGitLab Provider = "gitlab"
)

// Trigger says whether a run was started by automation (a push, a schedule, another pipeline)
// or by a person (a manual pipeline, workflow_dispatch, a command run by hand).
type Trigger string

// The trigger kinds.
const (
	TriggerAutomated Trigger = "automated"
	TriggerManual    Trigger = "manual"
)

// Context is what deliver knows about the job it runs in.
type Context struct {
	Provider Provider
	// SourceRepo is the web URL of the application repository whose pipeline runs deliver.
	SourceRepo string
	// Commit is the application commit SHA the pipeline runs for.
	Commit string
	// CommitURL links to that commit, when the provider's URL scheme is known.
	CommitURL string
	// PipelineURL links to the pipeline (GitLab) or workflow run (GitHub).
	PipelineURL string
	// Actor is who started the pipeline; ActorEmail their e-mail when the provider gives it.
	Actor, ActorEmail string
	// Event is the provider's own name for what started the pipeline (push, web, workflow_dispatch...).
	Event string
	// Trigger classifies Event; runs outside CI are manual.
	Trigger Trigger
	// ServerURL is the forge's web address (GITHUB_SERVER_URL, CI_SERVER_URL), and SSHHost the
	// host its git SSH server answers on when that differs (GitLab's CI_SERVER_SHELL_SSH_HOST):
	// with them deliver links the commits of a config repo on the same self-hosted forge.
	ServerURL, SSHHost string
	// Action is true when deliver runs as the GitHub Action (action.yml), whose inputs arrive as
	// INPUT_<NAME> variables, rather than as a command of a workflow's run: step.
	Action bool
}

// Detect reads the CI context from an environment lookup function (the run's, step.IO.Getenv).
func Detect(getenv func(string) string) Context {
	switch {
	case getenv("GITHUB_ACTIONS") == "true":
		server := strings.TrimSuffix(or(getenv("GITHUB_SERVER_URL"), "https://github.com"), "/")
		repo := getenv("GITHUB_REPOSITORY")
		c := Context{
			Provider: ProviderGitHub,
			Commit:   getenv("GITHUB_SHA"),
			Actor:    getenv("GITHUB_ACTOR"),
			Event:    getenv("GITHUB_EVENT_NAME"),
			// The action always has the command input (default deploy); a run: step has no INPUT_*.
			ServerURL: server,
			Action:    getenv("INPUT_COMMAND") != "",
		}
		if repo != "" {
			c.SourceRepo = server + "/" + repo
			if c.Commit != "" {
				c.CommitURL = c.SourceRepo + "/commit/" + c.Commit
			}
			if id := getenv("GITHUB_RUN_ID"); id != "" {
				c.PipelineURL = c.SourceRepo + "/actions/runs/" + id
			}
		}
		if c.Actor != "" {
			c.ActorEmail = c.Actor + "@users.noreply.github.com"
		}
		c.Trigger = githubTrigger(c.Event)
		return c
	case getenv("GITLAB_CI") == "true":
		c := Context{
			Provider:    ProviderGitLab,
			SourceRepo:  getenv("CI_PROJECT_URL"),
			Commit:      getenv("CI_COMMIT_SHA"),
			PipelineURL: getenv("CI_PIPELINE_URL"),
			Actor:       or(getenv("GITLAB_USER_NAME"), getenv("GITLAB_USER_LOGIN")),
			ActorEmail:  getenv("GITLAB_USER_EMAIL"),
			Event:       getenv("CI_PIPELINE_SOURCE"),
			ServerURL:   strings.TrimSuffix(getenv("CI_SERVER_URL"), "/"),
			SSHHost:     getenv("CI_SERVER_SHELL_SSH_HOST"),
		}
		if c.SourceRepo != "" && c.Commit != "" {
			c.CommitURL = c.SourceRepo + "/-/commit/" + c.Commit
		}
		c.Trigger = gitlabTrigger(c.Event)
		if getenv("CI_JOB_MANUAL") == "true" {
			// A `when: manual` job a person played runs in a push pipeline, but it is manual.
			c.Trigger = TriggerManual
		}
		return c
	default:
		return Context{Trigger: TriggerManual, Event: "cli"}
	}
}

// githubTrigger classifies GITHUB_EVENT_NAME: a person pressed a button for workflow_dispatch;
// everything else (push, schedule, repository_dispatch, workflow_run, pull_request...) is automation.
func githubTrigger(event string) Trigger {
	if event == "workflow_dispatch" {
		return TriggerManual
	}
	return TriggerAutomated
}

// gitlabTrigger classifies CI_PIPELINE_SOURCE: "web" (Run pipeline button) and "chat" (ChatOps)
// are people; push, schedule, api, trigger, pipeline, parent_pipeline, merge_request_event and
// the rest are automation. An unknown or empty source counts as automated, the safer reading.
func gitlabTrigger(source string) Trigger {
	switch source {
	case "web", "chat":
		return TriggerManual
	}
	return TriggerAutomated
}

// ParseTrigger parses the --trigger flag: "manual", "automated" or "" (detect).
func ParseTrigger(s string) (Trigger, bool) {
	switch Trigger(s) {
	case TriggerManual, TriggerAutomated:
		return Trigger(s), true
	}
	return "", false
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

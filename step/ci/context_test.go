package ci

import "testing"

func TestDetect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want Context
	}{
		{
			name: "outside CI",
			env:  map[string]string{},
			want: Context{Trigger: TriggerManual, Event: "cli"},
		},
		{
			name: "github push",
			env: map[string]string{
				"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/web",
				"GITHUB_SHA": "abc123", "GITHUB_RUN_ID": "99", "GITHUB_ACTOR": "octo", "GITHUB_EVENT_NAME": "push",
			},
			want: Context{
				Provider: ProviderGitHub, SourceRepo: "https://github.com/acme/web", Commit: "abc123",
				CommitURL: "https://github.com/acme/web/commit/abc123", PipelineURL: "https://github.com/acme/web/actions/runs/99",
				Actor: "octo", ActorEmail: "octo@users.noreply.github.com", Event: "push", Trigger: TriggerAutomated,
				ServerURL: "https://github.com",
			},
		},
		{
			name: "github workflow_dispatch is manual",
			env:  map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_EVENT_NAME": "workflow_dispatch"},
			want: Context{Provider: ProviderGitHub, Event: "workflow_dispatch", Trigger: TriggerManual, ServerURL: "https://github.com"},
		},
		{
			name: "github action on GitHub Enterprise Server",
			env: map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://ghe.example.com/", "GITHUB_REPOSITORY": "acme/web",
				"GITHUB_EVENT_NAME": "push", "INPUT_COMMAND": "deploy"},
			want: Context{Provider: ProviderGitHub, SourceRepo: "https://ghe.example.com/acme/web", Event: "push", Trigger: TriggerAutomated,
				ServerURL: "https://ghe.example.com", Action: true},
		},
		{
			name: "gitlab web pipeline is manual",
			env: map[string]string{
				"GITLAB_CI": "true", "CI_PROJECT_URL": "https://gitlab.example.com/team/web", "CI_COMMIT_SHA": "def456",
				"CI_PIPELINE_URL": "https://gitlab.example.com/team/web/-/pipelines/7", "GITLAB_USER_NAME": "Ada",
				"GITLAB_USER_EMAIL": "ada@example.com", "CI_PIPELINE_SOURCE": "web",
				"CI_SERVER_URL": "https://gitlab.example.com", "CI_SERVER_SHELL_SSH_HOST": "ssh.gitlab.example.com",
			},
			want: Context{
				Provider: ProviderGitLab, SourceRepo: "https://gitlab.example.com/team/web", Commit: "def456",
				CommitURL: "https://gitlab.example.com/team/web/-/commit/def456", PipelineURL: "https://gitlab.example.com/team/web/-/pipelines/7",
				Actor: "Ada", ActorEmail: "ada@example.com", Event: "web", Trigger: TriggerManual,
				ServerURL: "https://gitlab.example.com", SSHHost: "ssh.gitlab.example.com",
			},
		},
		{
			name: "gitlab manual job in a push pipeline is manual",
			env:  map[string]string{"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "push", "CI_JOB_MANUAL": "true"},
			want: Context{Provider: ProviderGitLab, Event: "push", Trigger: TriggerManual},
		},
		{
			name: "gitlab schedule is automated",
			env:  map[string]string{"GITLAB_CI": "true", "CI_PIPELINE_SOURCE": "schedule"},
			want: Context{Provider: ProviderGitLab, Event: "schedule", Trigger: TriggerAutomated},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Detect(func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Errorf("Detect() =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

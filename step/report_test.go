package step_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// TestCIOutputsUnwritable: a deploy whose CI output files cannot be written (a directory where
// GITHUB_OUTPUT or GITHUB_STEP_SUMMARY should be a file, a dotenv path under a regular file)
// still pushes; then it ends with exit 10 (not 2, which says nothing was done, and without a
// panic), naming the file.
func TestCIOutputsUnwritable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// env is the CI environment; {dir} is a directory, {file} a regular file.
		env  []string
		want string // in the message
	}{
		{name: "GITHUB_OUTPUT is a directory", env: []string{"GITHUB_ACTIONS=true", "GITHUB_OUTPUT={dir}", "GITHUB_STEP_SUMMARY={dir}/../summary"},
			want: "writing the step outputs to GITHUB_OUTPUT: open {dir}: is a directory"},
		{name: "GITHUB_STEP_SUMMARY under a file", env: []string{"GITHUB_ACTIONS=true", "GITHUB_OUTPUT={dir}/../output", "GITHUB_STEP_SUMMARY={file}/summary"},
			want: "writing the job summary to GITHUB_STEP_SUMMARY: open {file}/summary: not a directory"},
		{name: "GitLab dotenv under a file", env: []string{"GITLAB_CI=true", "DELIVER_DOTENV={file}/deliver.env"},
			want: "writing the dotenv report {file}/deliver.env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": "stg"}, OverlayImages: fixture.StagingImages})
			digest := s.PushImage(t, "team/web", "1.4.3")
			tmp := t.TempDir()
			dir, file := filepath.Join(tmp, "dir"), filepath.Join(tmp, "file")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			expand := strings.NewReplacer("{dir}", dir, "{file}", file).Replace
			var env []string
			for _, e := range tt.env {
				env = append(env, expand(e))
			}
			old := s.Head(t)
			r := run(t, env, args([]string{"deploy", "--env", "staging", "--no-apply", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, s.GitArgs())...)
			if r.code != step.ExitReport {
				t.Errorf("exit %d, want %d\n%s", r.code, step.ExitReport, r)
			}
			if strings.Contains(r.stderr, "panic") || strings.Contains(r.stderr, "goroutine ") {
				t.Errorf("deliver panicked:\n%s", r.stderr)
			}
			if want := expand(tt.want); !strings.Contains(r.stderr, want) {
				t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
			}
			// The push happened before the outputs were written: it is not undone.
			if s.Head(t) == old || !strings.Contains(s.File(t, "overlays/staging/kustomization.yaml"), "digest: "+digest) {
				t.Errorf("the deploy was not pushed")
			}
		})
	}
}

package step

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/api/types"

	"github.com/deliverhq/deliver/kustomize"
	"github.com/deliverhq/deliver/step/ci"
	"github.com/deliverhq/deliver/step/cluster"
	"github.com/deliverhq/deliver/step/configrepo"
	"github.com/deliverhq/deliver/step/registry"
	"github.com/deliverhq/deliver/step/release"
)

func TestSplitList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{""}, nil},
		{[]string{"a"}, []string{"a"}},
		{[]string{"a,b", "c"}, []string{"a", "b", "c"}},
		{[]string{"a\nb\r\nc"}, []string{"a", "b", "c"}},   // a CI input with one image a line
		{[]string{" a , b\t c "}, []string{"a", "b", "c"}}, // spaces and tabs separate too
		{[]string{",,a,,"}, []string{"a"}},                 // empty entries vanish
	}
	for _, tt := range tests {
		if got := splitList(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestValidateEnvName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"staging", "prod-eu_1", "a.b", "A", strings.Repeat("x", 63)} {
		if err := validateEnvName(ok); err != nil {
			t.Errorf("validateEnvName(%q) = %v, want nil", ok, err)
		}
	}
	tests := []struct{ name, want string }{
		{"", "no environment given"},
		{strings.Repeat("x", 64), "longer than 63 characters"},
		{".", `must not contain ".."`},
		{"..", `must not contain ".."`},
		{"a..b", `must not contain ".."`},
		{"a/b", `found '/'`},
		{`a\b`, `found '\\'`},
		{"a b", `found ' '`},
		{"a\nb", `found '\n'`},
		{"stag$ing", `found '$'`},
		{"é", `found 'é'`},
	}
	for _, tt := range tests {
		err := validateEnvName(tt.name)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "--env") {
			t.Errorf("validateEnvName(%q) = %v, want an error about --env saying %q", tt.name, err, tt.want)
		}
	}
}

func TestOverlayPath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		template, env, want, err string
	}{
		{"overlays/{env}", "staging", "overlays/staging", ""},
		{"{env}", "staging", "staging", ""},
		{"clusters/{env}/apps/{env}", "eu", "clusters/eu/apps/eu", ""},
		{"overlays/./{env}/", "staging", "overlays/staging", ""},
		{`overlays\{env}`, "staging", "overlays/staging", ""}, // a Windows separator in a CI variable
		{"overlays/../{env}", "staging", "staging", ""},       // still inside the repo
		{"../{env}", "staging", "", "must stay inside the config repo"},
		{"overlays/../../{env}", "staging", "", "must stay inside the config repo"},
		{"/etc/{env}", "staging", "", "must stay inside the config repo"},
		{"{env}/../..", "staging", "", "must stay inside the config repo"},
		{"", "staging", "", "has no {env}"},
		{"overlays/staging", "staging", "", "has no {env}, so every environment would use the same overlay"},
		{"overlays/{env}\x00", "staging", "", "not a usable path"},
		{"overlays/\n{env}", "staging", "", "not a usable path"},
	}
	for _, tt := range tests {
		got, err := overlayPath(tt.template, tt.env)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("overlayPath(%q, %q) = %q, %v; want %q", tt.template, tt.env, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "--path-template")):
			t.Errorf("overlayPath(%q, %q) = %q, %v; want an error about --path-template saying %q", tt.template, tt.env, got, err, tt.err)
		}
	}
}

func TestResultLine(t *testing.T) {
	t.Parallel()
	sha := strings.Repeat("ab", 20)
	tests := []struct {
		name string
		o    ci.Outcome
		want string
	}{
		{"no environment", ci.Outcome{Command: "set-image", Changed: true, Images: []string{"web=reg/web:1"}}, "set-image changed=true web=reg/web:1"},
		{"nothing to do", ci.Outcome{Command: "deploy", Environment: "staging", CommitSHA: sha}, "deploy env=staging changed=false commit=" + sha},
		{"zero commit hidden", ci.Outcome{Command: "lock", Environment: "staging", CommitSHA: strings.Repeat("0", 40)}, "lock env=staging changed=false"},
		{"applied", ci.Outcome{Command: "deploy", Environment: "prod", Changed: true, CommitSHA: sha, Images: []string{"a=x:1", "b=y:2"}, Applied: 3, Rollout: "ready"},
			"deploy env=prod changed=true commit=" + sha + " a=x:1 b=y:2 applied=3 rollout=ready"},
		{"pruned", ci.Outcome{Command: "apply", Environment: "prod", Applied: 2, Pruned: 1, Rollout: "not-waited"}, "apply env=prod changed=false applied=2 pruned=1 rollout=not-waited"},
	}
	for _, tt := range tests {
		if got := resultLine(tt.o); got != tt.want {
			t.Errorf("%s: resultLine = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestSmallFormatters(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ got, want string }{
		{short("0123456789abcdef"), "0123456789ab"},
		{short("abc"), "abc"},
		{orNone(""), "(none)"},
		{orNone("x"), "x"},
		{orDash(" "), "-"},
		{orDash("x"), "x"},
		{forcedMark(true), " (forced)"},
		{forcedMark(false), ""},
		{firstNonEmpty("", "b"), "b"},
		{firstNonEmpty("a", "b"), "a"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// cliContext returns a context in which the flags hold the values of args.
func cliContext(t *testing.T, flags []cli.Flag, args ...string) *cli.Context {
	t.Helper()
	set := flag.NewFlagSet("test", flag.ContinueOnError)
	for _, f := range flags {
		if err := f.Apply(set); err != nil {
			t.Fatal(err)
		}
	}
	if err := set.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cli.NewContext(&cli.App{}, set, nil)
}

func TestTrigger(t *testing.T) {
	t.Parallel()
	flags := []cli.Flag{&cli.StringFlag{Name: flagTrigger}}
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return mapEnv(m)
	}
	tests := []struct {
		name      string
		env       func(string) string
		args      []string
		want      ci.Trigger
		wantEvent string
		err       string
	}{
		{name: "outside CI", env: env(), want: ci.TriggerManual, wantEvent: "cli"},
		{name: "GitLab push", env: env("GITLAB_CI", "true", "CI_PIPELINE_SOURCE", "push"), want: ci.TriggerAutomated, wantEvent: "push"},
		{name: "GitLab Run pipeline", env: env("GITLAB_CI", "true", "CI_PIPELINE_SOURCE", "web"), want: ci.TriggerManual, wantEvent: "web"},
		{name: "GitLab manual job in a push pipeline", env: env("GITLAB_CI", "true", "CI_PIPELINE_SOURCE", "push", "CI_JOB_MANUAL", "true"), want: ci.TriggerManual, wantEvent: "push"},
		{name: "GitHub push", env: env("GITHUB_ACTIONS", "true", "GITHUB_EVENT_NAME", "push"), want: ci.TriggerAutomated, wantEvent: "push"},
		{name: "GitHub workflow_dispatch", env: env("GITHUB_ACTIONS", "true", "GITHUB_EVENT_NAME", "workflow_dispatch"), want: ci.TriggerManual, wantEvent: "workflow_dispatch"},
		{name: "flag overrides CI", env: env("GITHUB_ACTIONS", "true", "GITHUB_EVENT_NAME", "push"), args: []string{"--trigger", "manual"}, want: ci.TriggerManual, wantEvent: "push"},
		{name: "flag outside CI", env: env(), args: []string{"--trigger", "automated"}, want: ci.TriggerAutomated, wantEvent: "cli"},
		{name: "bad flag", env: env(), args: []string{"--trigger", "Manual"}, err: `--trigger "Manual": want manual or automated`},
	}
	for _, tt := range tests {
		r := &runner{ci: ci.Detect(tt.env)}
		got, event, err := r.trigger(cliContext(t, flags, tt.args...))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || ExitCode(err) != ExitUsage {
				t.Errorf("%s: err %v (exit %d), want exit 2 saying %q", tt.name, err, ExitCode(err), tt.err)
			}
			continue
		}
		if err != nil || got != tt.want || event != tt.wantEvent {
			t.Errorf("%s: trigger = %q, %q, %v; want %q, %q", tt.name, got, event, err, tt.want, tt.wantEvent)
		}
	}
}

func TestAuthor(t *testing.T) {
	t.Parallel()
	flags := []cli.Flag{&cli.StringFlag{Name: flagAuthorName}, &cli.StringFlag{Name: flagAuthorEmail}}
	tests := []struct {
		name               string
		ci                 ci.Context
		args               []string
		wantName, wantMail string
	}{
		{"nothing known", ci.Context{}, nil, "deliver", "deliver@localhost"},
		{"the CI user", ci.Context{Actor: "Ada", ActorEmail: "ada@example.com"}, nil, "Ada", "ada@example.com"},
		{"flags win", ci.Context{Actor: "Ada", ActorEmail: "ada@example.com"}, []string{"--author-name", "Bot", "--author-email", "bot@example.com"}, "Bot", "bot@example.com"},
		{"name only", ci.Context{}, []string{"--author-name", "Bot"}, "Bot", "deliver@localhost"},
	}
	for _, tt := range tests {
		r := &runner{ci: tt.ci}
		before := time.Now()
		sig := r.author(cliContext(t, flags, tt.args...))
		if sig.Name != tt.wantName || sig.Email != tt.wantMail || sig.When.Before(before) {
			t.Errorf("%s: author = %q <%s> at %s, want %q <%s> now", tt.name, sig.Name, sig.Email, sig.When, tt.wantName, tt.wantMail)
		}
	}
}

func TestParseImageSpecs(t *testing.T) {
	t.Parallel()
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	specs, err := parseImageSpecs([]string{"web=reg.example.com/team/web:1.2.3,api=reg.example.com/team/api@" + digest, "reg.example.com/team/worker:2"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range specs {
		got = append(got, s.image.Name+" "+s.ref)
	}
	want := []string{"web reg.example.com/team/web:1.2.3", "api reg.example.com/team/api@" + digest, "reg.example.com/team/worker reg.example.com/team/worker:2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseImageSpecs = %q, want %q", got, want)
	}
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{nil, "no image given"},
		{[]string{" , "}, "no image given"},
		{[]string{"web=reg/web:*"}, `"*" (keep) is for set-image`},
		{[]string{"web=reg/web"}, "needs a tag or a digest"},
		{[]string{"web=reg/web:1", "web=reg/web:2"}, `image "web" given twice`},
		{[]string{"web=reg/web:1;rm"}, `--image "web=reg/web:1;rm"`},
	} {
		_, err := parseImageSpecs(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || ExitCode(err) != ExitUsage {
			t.Errorf("parseImageSpecs(%q) = %v (exit %d), want exit 2 saying %q", tt.in, err, ExitCode(err), tt.want)
		}
	}
}

func TestImageFromRef(t *testing.T) {
	t.Parallel()
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	img, err := imageFromRef("web", "reg.example.com/team/web:1.0@"+digest)
	want := types.Image{Name: "web", NewName: "reg.example.com/team/web", NewTag: "1.0", Digest: digest}
	if err != nil || img != want {
		t.Errorf("imageFromRef = %+v, %v; want %+v", img, err, want)
	}
	if _, err := imageFromRef("web", "reg.example.com/team/web"); err == nil || !strings.Contains(err.Error(), "neither tag nor digest") {
		t.Errorf("a recorded reference without tag or digest: %v", err)
	}
	if _, err := imageFromRef("web", "reg/web:1 2"); err == nil || !strings.Contains(err.Error(), `the recorded image "reg/web:1 2"`) {
		t.Errorf("an unparseable recorded reference: %v", err)
	}
}

func TestRevertPlan(t *testing.T) {
	t.Parallel()
	prev := types.Image{Name: "web", NewName: "reg/web", NewTag: "1.0", TagSuffix: "-alpine"}
	landed := editResult{
		changes:  []release.ImageChange{{Name: "web", From: "reg/web:1.0", To: "reg/web:2.0"}, {Name: "api", To: "reg/api:3"}},
		previous: map[string]types.Image{"web": prev},
	}
	restore, remove := revertPlan(landed)
	if !reflect.DeepEqual(restore, []types.Image{prev}) || !reflect.DeepEqual(remove, []string{"api"}) {
		t.Errorf("revertPlan = %+v, %q; want web restored (tagSuffix kept) and api removed", restore, remove)
	}
	for _, tt := range []struct {
		restore []types.Image
		remove  []string
		want    string
	}{
		{[]types.Image{prev}, nil, "reverted to web=reg/web:1.0"},
		{nil, []string{"api"}, "reverted: removed the override of api that this run added"},
		{[]types.Image{prev}, []string{"api", "db"}, "reverted to web=reg/web:1.0 and removed the override of api, db that this run added"},
	} {
		if got := revertSummary(tt.restore, tt.remove); got != tt.want {
			t.Errorf("revertSummary = %q, want %q", got, tt.want)
		}
	}
}

func TestGuardImages(t *testing.T) {
	t.Parallel()
	got := guardImages([]types.Image{
		{Name: "web", NewName: "reg/web", NewTag: "1.0"},
		{Name: "api", NewName: "reg/api"}, // only renamed: no reference to judge
	})
	if len(got) != 2 || got[0].Name != "web" || got[0].Tag != "1.0" || got[0].Ref != "reg/web:1.0" || got[1].Ref != "" {
		t.Errorf("guardImages = %+v", got)
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("doing something: %w", err) }
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitOK},
		{errors.New("anything"), ExitFailure},
		{usage(errors.New("bad flag")), ExitUsage},
		{wrap(usage(errors.New("bad flag"))), ExitUsage},
		{wrap(errPolicy), ExitPolicy},
		{wrap(registry.ErrNotFound), ExitImageNotFound},
		{wrap(registry.ErrUnauthorized), ExitAuth},
		{wrap(configrepo.ErrAuth), ExitAuth},
		{wrap(cluster.ErrUnauthorized), ExitAuth},
		{wrap(registry.ErrUnreachable), ExitRegistry},
		{wrap(registry.ErrInvalidRef), ExitUsage},
		{wrap(kustomize.ErrInvalidImage), ExitUsage},
		{wrap(kustomize.ErrNoKustomization), ExitUsage},
		{wrap(kustomize.ErrOutsideRoot), ExitUsage},
		{wrap(kustomize.ErrRemoteResource), ExitUsage},
		{wrap(kustomize.ErrTooLarge), ExitUsage},
		{wrap(&kustomize.FileError{Path: "k.yaml", Err: errors.New("bad")}), ExitUsage},
		{wrap(cluster.ErrInvalid), ExitUsage},
		{wrap(cluster.ErrRolloutFailed), ExitRollout},
		{wrap(cluster.ErrApply), ExitApply},
		{wrap(cluster.ErrUnreachable), ExitApply},
		{wrap(configrepo.ErrUnreachable), ExitPush},
		{wrap(configrepo.ErrRejected), ExitPush},
		{wrap(configrepo.ErrConflict), ExitPush},
		{wrap(configrepo.ErrNotFound), ExitPush},
		{wrap(context.Canceled), ExitInterrupted},
		{exitCodeError{code: ExitFailure, err: usage(errors.New("drift"))}, ExitFailure}, // diff's drift: the explicit code wins
		{fmt.Errorf("%w: %w", errPolicy, registry.ErrNotFound), ExitPolicy},              // the first matching rule decides
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

package step_test

import (
	"strings"
	"testing"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
	"github.com/deliverhq/deliver/step/release"
)

// TestRevertFirstDeploy: the first deploy of an image that had no images: entry, whose
// rollout never becomes ready, is reverted like any other: the entry deliver added is
// removed (the overlay is byte for byte what it was), and the cluster runs the previous
// pods again, the manifests' own image.
func TestRevertFirstDeploy(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("first")
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns}})
	s.PushImage(t, "team/never-ready", "2.0.0")
	kube := []string{"--kubeconfig", cl.Kubeconfig, "--timeout", "60s"}
	const overlay = "overlays/staging/kustomization.yaml"
	before := s.File(t, overlay)
	if strings.Contains(before, "images:") {
		t.Fatalf("the fixture's overlay already has images:\n%s", before)
	}
	// The environment as the repo has it: the base's image, before deliver ever deployed.
	if r := run(t, nil, args([]string{"apply", "--env", "staging"}, kube, s.GitArgs())...); r.code != 0 {
		t.Fatalf("apply:\n%s", r)
	}
	if img, ready := runningImage(t, cl, ns, "web"); img != "web" || ready != "1/1" {
		t.Fatalf("before the deploy the Deployment runs %s (%s ready), want web (1/1)", img, ready)
	}
	head := s.Head(t)

	r := run(t, nil, args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/never-ready", "2.0.0"),
		"--kubeconfig", cl.Kubeconfig, "--timeout", "8s"}, s.GitArgs())...)
	if r.code != step.ExitRollout {
		t.Fatalf("exit %d, want %d (rollout failed, reverted)\n%s", r.code, step.ExitRollout, r)
	}
	for _, want := range []string{"reverted: removed the override of web that this run added", "the previous version is running again"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "nothing to revert") || strings.Contains(r.stderr, "leaving it in place") {
		t.Errorf("the revert was skipped:\n%s", r.stderr)
	}

	// The repo: the failed deploy, then its revert, which gives back the overlay byte for byte.
	if got := s.File(t, overlay); got != before {
		t.Errorf("the overlay after the revert differs from before the deploy:\n%s\nwant:\n%s", got, before)
	}
	log, err := s.Git.Log(s.Name, "main")
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 3 || log[1].ParentHashes[0].String() != head {
		t.Fatalf("want the seed, the failed deploy on it and the revert on top: %d commits", len(log))
	}
	rec, err := release.Parse(log[0].Message)
	if err != nil || rec.Action != release.ActionRevert || rec.Reverts != log[1].Hash.String() || len(rec.Images) != 1 ||
		rec.Images[0].Name != "web" || !strings.Contains(rec.Images[0].From, "never-ready") || rec.Images[0].To != "web" {
		t.Errorf("revert record: %+v, %v\n%s", rec, err, log[0].Message)
	}

	// The cluster: the previous pods, ready again.
	if img, ready := runningImage(t, cl, ns, "web"); img != "web" || ready != "1/1" {
		t.Errorf("after the revert the Deployment runs %s (%s ready), want web (1/1)", img, ready)
	}
	for _, p := range podImages(t, cl, ns, "web") {
		if p != "web" {
			t.Errorf("a ready pod runs %s, want web", p)
		}
	}
}

// TestImageMustRender: an image that no object of the overlay uses, or that the overlay
// renders as another reference than the one deliver verified, is refused as bad input
// (exit 2) before anything is pushed, naming the image, the images the objects do use and
// the closest one; deploy and promote alike.
func TestImageMustRender(t *testing.T) {
	t.Parallel()
	// Every overlay has an override for debug, an image no object uses.
	debug := "  - name: debug\n    newName: {registry}/team/debug\n    newTag: \"1\"\n"
	s := fixture.NewServers(t, fixture.App{Services: []string{"web", "api"}, WithServices: true,
		Envs: map[string]string{"staging": "stg", "production": "prod", "qa": "qa"}, OverlayImages: fixture.StagingImages + debug}, fixture.Options{
		Edit: func(files map[string]string) {
			// qa pins web's image with a replacement, which runs after the images: transformer.
			qa := strings.Replace(files["overlays/qa/kustomization.yaml"], "  - namespace.yaml\n", "  - namespace.yaml\n  - pin.yaml\n", 1)
			files["overlays/qa/kustomization.yaml"] = qa + `replacements:
  - source: {kind: ConfigMap, name: pin, fieldPath: data.image}
    targets:
      - select: {kind: Deployment, name: web}
        fieldPaths:
          - spec.template.spec.containers.[name=web].image
`
			files["overlays/qa/pin.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pin\ndata:\n  image: web:pinned\n"
			// staging runs debug 2: a promotion to production would change its override.
			files["overlays/staging/kustomization.yaml"] = strings.Replace(files["overlays/staging/kustomization.yaml"],
				"team/debug\n    newTag: \"1\"", "team/debug\n    newTag: \"2\"", 1)
		},
	})
	s.PushImage(t, "team/web", "1.4.3")
	s.PushImage(t, "team/api", "2.0.0")
	s.PushImage(t, "team/debug", "2")
	web := s.Reg.Ref("team/web", "1.4.3")

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{
			name: "a typo in the name",
			args: []string{"deploy", "--no-apply", "--env", "staging", "--image", "wbe=" + web},
			want: []string{`no object of overlay overlays/staging uses image "wbe"`, "the images its objects use are: api, web", `(closest: "web")`},
		},
		{
			name: "the registry path instead of the name, next to a good image",
			args: []string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + web, "--image", s.Reg.Host + "/team/api=" + s.Reg.Ref("team/api", "2.0.0")},
			want: []string{`uses image "` + s.Reg.Host + `/team/api"`, "the images its objects use are: api, web", `(closest: "api")`},
		},
		{
			name: "a typo behind a good image with the same reference",
			args: []string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + web, "--image", "wbe=" + web},
			want: []string{`uses image "wbe"`, `(closest: "web")`},
		},
		{
			name: "a dry run too",
			args: []string{"deploy", "--dry-run", "--no-apply", "--env", "staging", "--image", "nosuch=" + web},
			want: []string{`uses image "nosuch"`},
		},
		{
			name: "a replacement overrides the image",
			args: []string{"deploy", "--no-apply", "--env", "qa", "--image", "web=" + web},
			want: []string{`image "web": the overlay sets ` + web + "@sha256:", "but its objects render web:pinned at Deployment/qa/web spec.template.spec.containers[0].image"},
		},
		{
			name: "promote an image the target does not use",
			args: []string{"promote", "--no-apply", "--from", "staging", "--to", "production", "--image", "debug"},
			want: []string{`no object of overlay overlays/production uses image "debug"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := s.Head(t)
			r := run(t, nil, args(tt.args, s.GitArgs())...)
			if r.code != step.ExitUsage {
				t.Fatalf("exit %d, want %d (bad input)\n%s", r.code, step.ExitUsage, r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not contain %q:\n%s", w, r.stderr)
				}
			}
			if after := s.Head(t); after != head {
				t.Errorf("the branch moved from %s to %s", head, after)
			}
		})
	}
}

// TestDeployDropsTagSuffix (issue 18): deploying to an entry with a tagSuffix drops that
// line, as `kustomize edit set image` does, so the overlay says what it renders and what
// deliver verified and reports; every other byte stays.
func TestDeployDropsTagSuffix(t *testing.T) {
	t.Parallel()
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": "stg"},
		OverlayImages: fixture.StagingImages + "    tagSuffix: -alpine # the variant\n"})
	digest := s.PushImage(t, "team/web", "1.4.3")
	const overlay = "overlays/staging/kustomization.yaml"
	before := s.File(t, overlay)
	r := run(t, nil, args([]string{"deploy", "--no-apply", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3")}, s.GitArgs())...)
	if r.code != 0 {
		t.Fatalf("deploy:\n%s", r)
	}
	ref := s.Reg.Host + "/team/web:1.4.3@" + digest
	if !strings.Contains(r.stdout, "web="+ref) {
		t.Errorf("result line does not report %s: %q", ref, r.stdout)
	}
	want := strings.Replace(before, "    newTag: \"0.9.0\" # first release\n    tagSuffix: -alpine # the variant\n",
		"    newTag: \"1.4.3\" # first release\n    digest: "+digest+"\n", 1)
	if got := s.File(t, overlay); got != want {
		t.Errorf("overlay after the deploy:\n%s\nwant:\n%s", got, want)
	}
}

package step_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// uniqueNS returns a namespace name no other test uses.
func uniqueNS(prefix string) string {
	return fmt.Sprintf("%s-%06d", prefix, rand.IntN(1000000))
}

// runningImage is the image of the Deployment's pod template and its ready/desired replicas.
func runningImage(t *testing.T, c *testenv.Cluster, ns, name string) (image, ready string) {
	t.Helper()
	out := fixture.Kubectl(t, c, "get", "deployment", name, "-n", ns, "-o",
		`jsonpath={.spec.template.spec.containers[0].image} {.status.readyReplicas}/{.spec.replicas} {.metadata.generation}`)
	f := strings.Fields(out)
	if len(f) != 3 {
		t.Fatalf("unexpected kubectl output %q", out)
	}
	return f[0], f[1]
}

func generation(t *testing.T, c *testenv.Cluster, ns, name string) string {
	t.Helper()
	return fixture.Kubectl(t, c, "get", "deployment", name, "-n", ns, "-o", "jsonpath={.metadata.generation}")
}

// podImages lists the images of the Ready pods of app in ns.
func podImages(t *testing.T, c *testenv.Cluster, ns, app string) []string {
	t.Helper()
	out := fixture.Kubectl(t, c, "get", "pods", "-n", ns, "-l", "app="+app, "-o",
		`jsonpath={range .items[*]}{.spec.containers[0].image}={.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	var ready []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if img, ok := strings.CutSuffix(line, "=True"); ok {
			ready = append(ready, img)
		}
	}
	return ready
}

func TestDeployAppliesAndWaits(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("apply")
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns}, Replicas: 2, OverlayImages: fixture.StagingImages})
	digest := s.PushImage(t, "team/web", "1.4.3")
	deploy := args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3"), "--kubeconfig", cl.Kubeconfig, "--timeout", "60s"}, s.GitArgs())

	r := run(t, nil, deploy...)
	if r.code != 0 {
		t.Fatalf("deploy:\n%s", r)
	}
	want := s.Reg.Host + "/team/web:1.4.3@" + digest
	img, ready := runningImage(t, cl, ns, "web")
	if img != want || ready != "2/2" {
		t.Fatalf("Deployment runs %s with %s ready, want %s with 2/2", img, ready, want)
	}
	for _, p := range podImages(t, cl, ns, "web") {
		if p != want {
			t.Errorf("a ready pod runs %s, want %s", p, want)
		}
	}
	if !strings.Contains(r.stdout, "rollout=ready") || !strings.Contains(r.stdout, "applied=") {
		t.Errorf("result line: %q", r.stdout)
	}

	// The same deploy again: no commit, and the cluster sees no change (no new generation).
	commits, gen := s.Commits(t), generation(t, cl, ns, "web")
	r = run(t, nil, deploy...)
	if r.code != 0 || !strings.Contains(r.stdout, "changed=false") {
		t.Fatalf("second deploy:\n%s", r)
	}
	if s.Commits(t) != commits {
		t.Error("second deploy made a commit")
	}
	if g := generation(t, cl, ns, "web"); g != gen {
		t.Errorf("second deploy changed the Deployment: generation %s -> %s", gen, g)
	}

	// The cluster wiped: the same deploy recreates everything, with nothing to commit.
	fixture.Kubectl(t, cl, "delete", "namespace", ns, "--wait=true", "--timeout=60s")
	r = run(t, nil, deploy...)
	if r.code != 0 || !strings.Contains(r.stdout, "changed=false") || !strings.Contains(r.stdout, "rollout=ready") {
		t.Fatalf("deploy after the namespace was deleted:\n%s", r)
	}
	if img, ready := runningImage(t, cl, ns, "web"); img != want || ready != "2/2" {
		t.Fatalf("after re-deploy: %s %s", img, ready)
	}
}

func TestRolloutFailure(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("fail")
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns}, OverlayImages: fixture.StagingImages})
	good := s.PushImage(t, "team/web", "1.0.0")
	s.PushImage(t, "team/never-ready", "2.0.0")
	base := args([]string{"deploy", "--env", "staging", "--kubeconfig", cl.Kubeconfig, "--timeout", "60s"}, s.GitArgs())
	if r := run(t, nil, append(base, "--image", "web="+s.Reg.Ref("team/web", "1.0.0"))...); r.code != 0 {
		t.Fatalf("first deploy:\n%s", r)
	}
	goodRef := s.Reg.Host + "/team/web:1.0.0@" + good

	t.Run("keep", func(t *testing.T) {
		r := run(t, nil, append(base, "--image", "web="+s.Reg.Ref("team/never-ready", "2.0.0"), "--on-failure", "keep", "--timeout", "8s")...)
		if r.code != step.ExitRollout {
			t.Fatalf("exit %d, want %d (rollout failed)\n%s", r.code, step.ExitRollout, r)
		}
		if !strings.Contains(r.stderr, "Deployment/"+ns+"/web") {
			t.Errorf("the error does not name the Deployment:\n%s", r.stderr)
		}
		if img, _ := runningImage(t, cl, ns, "web"); !strings.Contains(img, "never-ready") {
			t.Errorf("--on-failure keep: the Deployment runs %s", img)
		}
		// Back to the good version for the next subtest.
		if r := run(t, nil, append(base, "--image", "web="+s.Reg.Ref("team/web", "1.0.0"))...); r.code != 0 {
			t.Fatalf("redeploying the good version:\n%s", r)
		}
	})

	t.Run("revert", func(t *testing.T) {
		head, _ := s.Git.Head(s.Name, "main")
		r := run(t, nil, append(base, "--image", "web="+s.Reg.Ref("team/never-ready", "2.0.0"), "--timeout", "8s")...)
		if r.code != step.ExitRollout {
			t.Fatalf("exit %d, want %d\n%s", r.code, step.ExitRollout, r)
		}
		if !strings.Contains(r.stderr, "reverted to web="+goodRef) {
			t.Errorf("the error does not explain the revert:\n%s", r.stderr)
		}
		log, err := s.Git.Log(s.Name, "main")
		if err != nil {
			t.Fatal(err)
		}
		if len(log) < 2 || log[1].ParentHashes[0] != head || !strings.Contains(log[0].Message, "Deliver-Action: revert") {
			t.Fatalf("want the failed deploy then its revert on top of %s; log starts %q / %q", head, log[0].Message, log[1].Message)
		}
		if got := s.File(t, "overlays/staging/kustomization.yaml"); !strings.Contains(got, "digest: "+good) || strings.Contains(got, "never-ready") {
			t.Errorf("the overlay was not reverted:\n%s", got)
		}
		if img, ready := runningImage(t, cl, ns, "web"); img != goodRef || ready != "1/1" {
			t.Errorf("after the revert the Deployment runs %s (%s ready), want %s", img, ready, goodRef)
		}
	})
}

func TestDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ns := uniqueNS("dry")
	s := newServers(t, fixture.App{Services: []string{"web"}, WithServices: true, Envs: map[string]string{"staging": ns}, OverlayImages: fixture.StagingImages})
	s.PushImage(t, "team/web", "1.4.3")
	head, _ := s.Git.Head(s.Name, "main")
	r := run(t, nil, args([]string{"deploy", "--env", "staging", "--dry-run", "--image", "web=" + s.Reg.Ref("team/web", "1.4.3"), "--kubeconfig", cl.Kubeconfig}, s.GitArgs())...)
	if r.code != 0 {
		t.Fatalf("dry run:\n%s", r)
	}
	for _, want := range []string{"--- a/overlays/staging/kustomization.yaml", "+    newTag: \"1.4.3\" # first release", "Deployment/" + ns + "/web would be created"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if after, _ := s.Git.Head(s.Name, "main"); after != head {
		t.Error("the dry run pushed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := cl.Kubectl(ctx, "get", "namespace", ns); err == nil || !strings.Contains(string(out)+err.Error(), "NotFound") {
		t.Errorf("the dry run created namespace %s: %v\n%s", ns, err, out)
	}
}

package step_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/internal/testenv/fixture"
	"github.com/deliverhq/deliver/step"
)

// kubectlApply writes docs to a file and runs kubectl apply -f on it with extra flags.
func kubectlApply(t *testing.T, cl *testenv.Cluster, docs string, extra ...string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "objects.yaml")
	if err := os.WriteFile(file, []byte(docs), 0o644); err != nil {
		t.Fatal(err)
	}
	fixture.Kubectl(t, cl, append([]string{"apply", "-f", file}, extra...)...)
}

// replicas is Deployment web's spec.replicas in ns.
func replicas(t *testing.T, cl *testenv.Cluster, ns string) string {
	t.Helper()
	return fixture.Kubectl(t, cl, "get", "deployment", "web", "-n", ns, "-o", "jsonpath={.spec.replicas}")
}

// ownershipApp is a config repo whose staging overlay deploys Deployment web (replicas pods)
// into its own namespace, with images web 1.0.0 to 3.0.0 in the registry; deploy is the
// command line of a deploy of one of them (without the --image value).
func ownershipApp(t *testing.T, cl *testenv.Cluster, prefix string, replicas int) (s *fixture.Servers, ns string, deploy func(tag string, extra ...string) result) {
	t.Helper()
	ns = uniqueNS(prefix)
	s = newServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": ns}, Replicas: replicas, OverlayImages: fixture.StagingImages})
	for _, tag := range []string{"1.0.0", "2.0.0", "3.0.0"} {
		s.PushImage(t, "team/web", tag)
	}
	return s, ns, func(tag string, extra ...string) result {
		t.Helper()
		return run(t, nil, args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", tag),
			"--kubeconfig", cl.Kubeconfig, "--timeout", "60s"}, extra, s.GitArgs())...)
	}
}

// TestConflictFoundBeforePush: another field manager took the container image; the deploy that
// would take it back without --force-conflicts ends with exit 6 before its push, naming the
// object, the field and the manager, and the config repo does not move. With
// --force-conflicts it deploys.
func TestConflictFoundBeforePush(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	s, ns, deploy := ownershipApp(t, cl, "owner", 1)
	if r := deploy("1.0.0"); r.code != 0 {
		t.Fatalf("first deploy:\n%s", r)
	}
	kubectlApply(t, cl, strings.ReplaceAll(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: NS
spec:
  template:
    spec:
      containers:
        - name: web
          image: registry.example/web:hotfix
`, "NS", ns), "--server-side", "--field-manager=kubectl", "--force-conflicts")

	head, commits := s.Head(t), s.Commits(t)
	r := deploy("2.0.0")
	if r.code != step.ExitApply {
		t.Fatalf("exit %d, want %d (a field conflict)\n%s", r.code, step.ExitApply, r)
	}
	if s.Head(t) != head || s.Commits(t) != commits {
		t.Errorf("the config repo moved from %s although the deploy could not apply", head)
	}
	for _, want := range []string{"Deployment/" + ns + "/web", `.spec.template.spec.containers[name="web"].image is owned by field manager "kubectl"`, "--force-conflicts", "nothing was pushed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the error does not say %q:\n%s", want, r.stderr)
		}
	}
	if img, _ := runningImage(t, cl, ns, "web"); img != "registry.example/web:hotfix" {
		t.Errorf("the Deployment runs %s, want the hotfix left alone", img)
	}

	r = deploy("2.0.0", "--force-conflicts")
	if r.code != 0 {
		t.Fatalf("deploy --force-conflicts:\n%s", r)
	}
	if img, _ := runningImage(t, cl, ns, "web"); !strings.Contains(img, "team/web:2.0.0@") {
		t.Errorf("after --force-conflicts the Deployment runs %s", img)
	}
}

// TestAutoscalerKeepsReplicas: an HPA targets the Deployment and has scaled it (the HPA
// controller's Update of the scale subresource, as kube-controller-manager). Deploys go
// through, with and without --force-conflicts, and the replicas stay as the HPA set them.
func TestAutoscalerKeepsReplicas(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	_, ns, deploy := ownershipApp(t, cl, "hpa", 1)
	if r := deploy("1.0.0"); r.code != 0 {
		t.Fatalf("first deploy:\n%s", r)
	}
	// minReplicas 1: the real HPA controller (no metrics server here) leaves 3 alone.
	kubectlApply(t, cl, strings.ReplaceAll(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: web
  namespace: NS
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 5
`, "NS", ns))
	fixture.Kubectl(t, cl, "patch", "deployment", "web", "-n", ns, "--subresource=scale", "--type=merge",
		"-p", `{"spec":{"replicas":3}}`, "--field-manager=kube-controller-manager")

	for _, c := range []struct {
		tag   string
		extra []string
	}{{"2.0.0", nil}, {"3.0.0", []string{"--force-conflicts"}}} {
		r := deploy(c.tag, c.extra...)
		if r.code != 0 || !strings.Contains(r.stdout, "rollout=ready") {
			t.Fatalf("deploy %s %v:\n%s", c.tag, c.extra, r)
		}
		if got := replicas(t, cl, ns); got != "3" {
			t.Errorf("deploy %s %v: replicas %s, want the HPA's 3", c.tag, c.extra, got)
		}
		note := "Deployment/" + ns + "/web: spec.replicas is left to HorizontalPodAutoscaler/" + ns + "/web (3 now; the overlay's 1 is not applied)"
		if n := strings.Count(r.stderr, note); n != 1 {
			t.Errorf("deploy %s %v: the note %q appears %d times, want once:\n%s", c.tag, c.extra, note, n, r.stderr)
		}
		if img, ready := runningImage(t, cl, ns, "web"); !strings.Contains(img, "team/web:"+c.tag+"@") || ready != "3/3" {
			t.Errorf("deploy %s %v: the Deployment runs %s, %s ready", c.tag, c.extra, img, ready)
		}
	}
}

// TestReplicasScaledByHand: kubectl scale set another count and no HPA targets the Deployment.
// A deploy ends before its push with exit 6, naming the field and the manager; with
// --force-conflicts it deploys, keeps the hand-set count and warns.
func TestReplicasScaledByHand(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	s, ns, deploy := ownershipApp(t, cl, "scaled", 2)
	if r := deploy("1.0.0"); r.code != 0 {
		t.Fatalf("first deploy:\n%s", r)
	}
	fixture.Kubectl(t, cl, "scale", "deployment", "web", "-n", ns, "--replicas=5")

	head := s.Head(t)
	r := deploy("2.0.0")
	if r.code != step.ExitApply {
		t.Fatalf("exit %d, want %d\n%s", r.code, step.ExitApply, r)
	}
	if s.Head(t) != head {
		t.Error("the config repo moved although the deploy could not apply")
	}
	for _, want := range []string{"Deployment/" + ns + "/web", `.spec.replicas is owned by field manager "kubectl`, "--force-conflicts applies the rest and keeps the live replica count"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("the error does not say %q:\n%s", want, r.stderr)
		}
	}

	r = deploy("2.0.0", "--force-conflicts")
	if r.code != 0 {
		t.Fatalf("deploy --force-conflicts:\n%s", r)
	}
	if got := replicas(t, cl, ns); got != "5" {
		t.Errorf("deploy --force-conflicts reset the replicas to %s, want the hand-set 5", got)
	}
	if !strings.Contains(r.stderr, "spec.replicas stays 5, as field manager \"kubectl") || !strings.Contains(r.stderr, "the overlay says 2") {
		t.Errorf("no warning about the kept replicas:\n%s", r.stderr)
	}
	if img, _ := runningImage(t, cl, ns, "web"); !strings.Contains(img, "team/web:2.0.0@") {
		t.Errorf("the Deployment runs %s", img)
	}
}

// TestDryRunFailuresBeforePush: an object the API server rejects, and a cluster identity that
// may not apply, end the deploy with their exit codes (2, 4) before the push.
func TestDryRunFailuresBeforePush(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)

	t.Run("invalid", func(t *testing.T) {
		t.Parallel()
		ns := uniqueNS("invalid")
		s := fixture.NewServers(t, fixture.App{Services: []string{"web"}, Envs: map[string]string{"staging": ns}, OverlayImages: fixture.StagingImages}, fixture.Options{
			Edit: func(files map[string]string) {
				files["base/web.yaml"] += "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n    - port: 70000\n"
			},
		})
		s.PushImage(t, "team/web", "1.0.0")
		// In a namespace that does not exist yet, a dry run can only say "created".
		fixture.Kubectl(t, cl, "create", "namespace", ns)
		head := s.Head(t)
		r := run(t, nil, args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0"), "--kubeconfig", cl.Kubeconfig}, s.GitArgs())...)
		if r.code != step.ExitUsage || !strings.Contains(r.stderr, "Service/"+ns+"/bad") || !strings.Contains(r.stderr, "nothing was pushed") {
			t.Fatalf("exit %d, want %d naming Service/%s/bad\n%s", r.code, step.ExitUsage, ns, r)
		}
		if s.Head(t) != head {
			t.Error("the config repo moved although the overlay cannot be applied")
		}
	})

	t.Run("forbidden", func(t *testing.T) {
		t.Parallel()
		s, ns, _ := ownershipApp(t, cl, "forbidden", 1)
		// A service account with no rights in the namespace: discovery works, applying does not.
		kc, err := clientcmd.LoadFromFile(cl.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range kc.AuthInfos {
			a.Impersonate = "system:serviceaccount:" + ns + ":nobody"
		}
		kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
		if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
			t.Fatal(err)
		}
		head := s.Head(t)
		r := run(t, nil, args([]string{"deploy", "--env", "staging", "--image", "web=" + s.Reg.Ref("team/web", "1.0.0"), "--kubeconfig", kubeconfig}, s.GitArgs())...)
		if r.code != step.ExitAuth || !strings.Contains(r.stderr, "forbidden") || !strings.Contains(r.stderr, "nothing was pushed") {
			t.Fatalf("exit %d, want %d (forbidden)\n%s", r.code, step.ExitAuth, r)
		}
		if s.Head(t) != head {
			t.Error("the config repo moved although the cluster forbids the apply")
		}
	})
}

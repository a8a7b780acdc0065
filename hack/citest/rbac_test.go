package citest

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/deliverhq/deliver/internal/testenv"
)

// TestRBACExample proves examples/rbac/deployer.yaml is enough, and not more than needed:
// deliver, authenticated as that ServiceAccount with a token kubeconfig, deploys the example
// overlay with --prune and waits for it, then prunes an object the overlay dropped; and the
// account can do nothing the file does not mean to allow.
func TestRBACExample(t *testing.T) {
	t.Parallel()
	cluster := testenv.SharedCluster(t)
	git := testenv.NewGitServer(t)
	reg := testenv.NewRegistry(t)
	repo := newConfigRepo(t, git, "acme/config")
	digest, err := reg.PushRandomImage("team/web", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := cluster.Kubectl(ctx, args...)
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// The example, with this test's names: the shared cluster may hold other tests' objects.
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "rbac", "deployer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	saNS, crName := uniqueName(t, "deliver-system"), uniqueName(t, "deliver-namespaces")
	staging, production := repo.Namespaces["staging"], repo.Namespaces["production"]
	manifest := strings.NewReplacer(
		"deliver-system", saNS, "deliver-namespaces", crName,
		"web-staging", staging, "web-production", production,
	).Replace(string(data))
	file := filepath.Join(t.TempDir(), "deployer.yaml")
	if err := os.WriteFile(file, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl("apply", "-f", file)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = cluster.Kubectl(ctx, "delete", "clusterrole,clusterrolebinding", crName, "--ignore-not-found", "--wait=false")
	})

	// What the account may and may not do, as the API server's authorizer answers.
	as := "--as=system:serviceaccount:" + saNS + ":deliver"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"patch", "deployments", "-n", staging}, "yes"},
		{[]string{"delete", "services", "-n", production}, "yes"},
		{[]string{"get", "secrets/deliver-staging", "-n", staging}, "yes"},
		{[]string{"get", "secrets/other", "-n", staging}, "no"},
		{[]string{"list", "secrets", "-n", staging}, "no"},
		{[]string{"watch", "deployments", "-n", staging}, "yes"},
		{[]string{"list", "horizontalpodautoscalers.autoscaling", "-n", staging}, "yes"},
		{[]string{"patch", "horizontalpodautoscalers.autoscaling", "-n", staging}, "no"},
		{[]string{"watch", "secrets", "-n", staging}, "no"},
		{[]string{"patch", "deployments", "-n", "default"}, "no"},
		{[]string{"create", "namespaces"}, "no"},
		{[]string{"delete", "namespaces/" + staging}, "no"},
		{[]string{"patch", "namespaces/kube-system"}, "no"},
		{[]string{"create", "pods", "-n", staging}, "no"},
	} {
		out, _ := cluster.Kubectl(ctx, append([]string{"auth", "can-i", as}, c.args...)...)
		if got := strings.TrimSpace(string(out)); got != c.want {
			t.Errorf("can-i %s: %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}

	// A kubeconfig with the account's token, as a CI job would get it.
	token := strings.TrimSpace(kubectl("create", "token", "deliver", "-n", saNS, "--duration=1h"))
	admin, err := clientcmd.LoadFromFile(cluster.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cur := admin.Contexts[admin.CurrentContext]
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = admin.Clusters[cur.Cluster]
	kc.AuthInfos["deliver"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["deliver"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "deliver"}
	kc.CurrentContext = "deliver"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}

	home := t.TempDir()
	deliverCmd := func(args ...string) string {
		t.Helper()
		args = append(args, "--config-repo", repo.URL, "--git-username", git.Username, "--git-token", git.Password,
			"--kubeconfig", kubeconfig, "--prune", "--timeout", "90s")
		out, err := run(ctx, home, cleanEnv(home), deliver(t), args...)
		if err != nil {
			t.Fatalf("deliver %s: %v\n%s", args[0], err, out)
		}
		if strings.Contains(out, token) {
			t.Errorf("deliver %s printed the service account token", args[0])
		}
		return out
	}

	// 1. Deploy with prune and wait, as the account.
	if out := deliverCmd("deploy", "--env", "staging", "--image", "web="+reg.Ref("team/web", "2.0.0")); strings.Contains(out, "may not be listed") {
		t.Errorf("deliver could not list what the example lets it list:\n%s", out)
	}
	image, ready := runningImage(t, cluster, staging)
	if want := reg.Ref("team/web", "2.0.0") + "@" + digest; image != want || ready != "2/2" {
		t.Errorf("%s runs %s with %s ready, want %s with 2/2", staging, image, ready, want)
	}

	// 2. The overlay drops the Service; deliver apply --prune deletes it, as the account.
	work := t.TempDir()
	u, err := url.Parse(repo.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(git.Username, git.Password)
	genv := cleanEnv(home, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=Ada", "GIT_AUTHOR_EMAIL=ada@example.test",
		"GIT_COMMITTER_NAME=Ada", "GIT_COMMITTER_EMAIL=ada@example.test")
	for _, args := range [][]string{
		{"clone", "-q", u.String(), "."},
		{"rm", "-q", "base/service.yaml"},
		{"commit", "-q", "-am", "drop the Service"},
		{"push", "-q", "origin", "HEAD:main"},
	} {
		if args[0] == "commit" {
			kust := filepath.Join(work, "base", "kustomization.yaml")
			b, err := os.ReadFile(kust)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(kust, []byte(strings.Replace(string(b), "  - service.yaml\n", "", 1)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := run(ctx, work, genv, "git", args...); err != nil {
			t.Fatalf("git %s: %v\n%s", args[0], err, out)
		}
	}
	out := deliverCmd("apply", "--env", "staging")
	if !strings.Contains(out, "1 pruned") {
		t.Errorf("deliver apply --prune did not report the pruned Service:\n%s", out)
	}
	if out, err := cluster.Kubectl(ctx, "get", "service", "web", "-n", staging); err == nil || !strings.Contains(string(out)+err.Error(), "NotFound") {
		t.Errorf("the Service is still there after the prune: %v\n%s", err, out)
	}
}

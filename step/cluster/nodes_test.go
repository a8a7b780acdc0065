package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/deliverhq/deliver/step/cluster"
)

// TestNodePlatforms: the platforms the nodes report, most common first, read over several pages
// of the node list; a deployer that may not list nodes gets "unknown", not an error; a cluster
// that does not answer is an error.
func TestNodePlatforms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	core, err := kubernetes.NewForConfig(e.cl.Config)
	if err != nil {
		t.Fatal(err)
	}
	// 101 arm64 nodes (more than a page of the list) and one that reports no platform, besides
	// the cluster's kwok node (linux/amd64). They are tainted so that nothing is scheduled there.
	prefix := e.ns + "-"
	t.Cleanup(func() {
		_ = core.CoreV1().Nodes().DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "deliver-test=" + e.ns})
	})
	for i := 0; i <= 101; i++ {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s%03d", prefix, i), Labels: map[string]string{"deliver-test": e.ns}},
			Spec: corev1.NodeSpec{Taints: []corev1.Taint{
				{Key: "deliver-test", Value: "no-pods", Effect: corev1.TaintEffectNoSchedule},
				{Key: "deliver-test", Value: "no-pods", Effect: corev1.TaintEffectNoExecute},
			}},
		}
		if _, err := core.CoreV1().Nodes().Create(e.ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if i == 101 {
			continue // reports no platform
		}
		status := []byte(`{"status":{"nodeInfo":{"operatingSystem":"linux","architecture":"arm64"}}}`)
		if _, err := core.CoreV1().Nodes().Patch(e.ctx, node.Name, types.MergePatchType, status, metav1.PatchOptions{}, "status"); err != nil {
			t.Fatal(err)
		}
	}

	got, err := e.c.NodePlatforms(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []cluster.Platform{{OS: "linux", Architecture: "arm64"}, {OS: "linux", Architecture: "amd64"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("NodePlatforms = %v, want %v", got, want)
	}
	if s := want[0].String(); s != "linux/arm64" {
		t.Errorf("Platform.String() = %q", s)
	}

	// A user without RBAC rules may not list nodes: unknown, no error.
	got, err = e.impersonating("deliver-no-nodes").NodePlatforms(e.ctx)
	if err != nil || len(got) != 0 {
		t.Errorf("NodePlatforms without the right to list nodes = %v, %v; want nothing, no error", got, err)
	}

	// A cluster that does not answer is an error.
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["closed"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["closed"] = &clientcmdapi.Context{Cluster: "closed", AuthInfo: "u"}
	cfg.CurrentContext = "closed"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	closed, err := cluster.Connect(e.ctx, cluster.Options{Kubeconfig: path})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := closed.NodePlatforms(e.ctx); !errors.Is(err, cluster.ErrUnreachable) {
		t.Errorf("NodePlatforms of a closed port = %v, %v; want ErrUnreachable", got, err)
	}
}

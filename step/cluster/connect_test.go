package cluster_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/deliverhq/deliver/internal/testenv"
	"github.com/deliverhq/deliver/step/cluster"
)

// kubeconfigs writes variants of the cluster's admin kubeconfig and returns
// their paths: "admin" (as is), "two" (contexts "broken", the current one,
// pointing at a closed port, and "good").
func kubeconfigs(t *testing.T, cl *testenv.Cluster) map[string]string {
	t.Helper()
	admin, err := clientcmd.LoadFromFile(cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cur := admin.Contexts[admin.CurrentContext]
	two := clientcmdapi.NewConfig()
	two.Clusters["real"] = admin.Clusters[cur.Cluster]
	two.Clusters["closed"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", CertificateAuthorityData: admin.Clusters[cur.Cluster].CertificateAuthorityData}
	two.AuthInfos["admin"] = admin.AuthInfos[cur.AuthInfo]
	two.Contexts["good"] = &clientcmdapi.Context{Cluster: "real", AuthInfo: "admin"}
	two.Contexts["broken"] = &clientcmdapi.Context{Cluster: "closed", AuthInfo: "admin"}
	two.CurrentContext = "broken"
	dir := t.TempDir()
	p := filepath.Join(dir, "two")
	if err := clientcmd.WriteToFile(*two, p); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"admin": cl.Kubeconfig, "two": p, "home": home, "emptyhome": t.TempDir()}
}

func TestConnect(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	kc := kubeconfigs(t, cl)
	adminData, err := os.ReadFile(kc["admin"])
	if err != nil {
		t.Fatal(err)
	}
	env := func(vars ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(vars); i += 2 {
				if vars[i] == k {
					return vars[i+1]
				}
			}
			return ""
		}
	}
	noEnv := env("HOME", kc["emptyhome"])
	for _, tc := range []struct {
		name       string
		opts       cluster.Options
		connectErr []string // Connect fails with ErrInvalid and these in its message
		serverErr  error    // ServerVersion fails with this
	}{
		{name: "path", opts: cluster.Options{Kubeconfig: kc["admin"], Getenv: noEnv}},
		{name: "data wins over path", opts: cluster.Options{KubeconfigData: adminData, Kubeconfig: kc["two"], Getenv: noEnv}},
		{name: "path wins over KUBECONFIG", opts: cluster.Options{Kubeconfig: kc["admin"], Getenv: env("KUBECONFIG", kc["two"])}},
		{name: "KUBECONFIG", opts: cluster.Options{Getenv: env("KUBECONFIG", kc["admin"])}},
		{name: "KUBECONFIG list", opts: cluster.Options{Getenv: env("KUBECONFIG", "/nonexistent/kubeconfig"+string(filepath.ListSeparator)+kc["admin"])}},
		{name: "home", opts: cluster.Options{Getenv: env("HOME", kc["home"])}},
		{name: "KUBECONFIG wins over home", opts: cluster.Options{Getenv: env("HOME", kc["home"], "KUBECONFIG", kc["two"])}, serverErr: cluster.ErrUnreachable},
		{name: "current context", opts: cluster.Options{Kubeconfig: kc["two"], Getenv: noEnv}, serverErr: cluster.ErrUnreachable},
		{name: "context selected", opts: cluster.Options{Kubeconfig: kc["two"], Context: "good", Getenv: noEnv}},
		{name: "context selected in data", opts: cluster.Options{KubeconfigData: mustRead(t, kc["two"]), Context: "good"}},
		{
			name:       "missing context",
			opts:       cluster.Options{Kubeconfig: kc["two"], Context: "staging", Getenv: noEnv},
			connectErr: []string{`kube context "staging" not found`, "available contexts: broken, good", kc["two"]},
		},
		{
			name:       "missing context in data",
			opts:       cluster.Options{KubeconfigData: mustRead(t, kc["two"]), Context: "staging"},
			connectErr: []string{`kube context "staging" not found`, "available contexts: broken, good", "kubeconfig data"},
		},
		{
			name:       "missing file",
			opts:       cluster.Options{Kubeconfig: "/nonexistent/kubeconfig", Getenv: noEnv},
			connectErr: []string{"/nonexistent/kubeconfig"},
		},
		{
			name:       "nothing to load",
			opts:       cluster.Options{Getenv: noEnv},
			connectErr: []string{"finding a kubeconfig", filepath.Join(kc["emptyhome"], ".kube", "config")},
		},
		{
			name:       "garbage data",
			opts:       cluster.Options{KubeconfigData: []byte("users: [{name: x, user: {token: [s3cr3t-t0ken]}}]\n")},
			connectErr: []string{"kubeconfig data", "not a valid kubeconfig"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := cluster.Connect(t.Context(), tc.opts)
			if tc.connectErr != nil {
				wantErr(t, err, cluster.ErrInvalid, tc.connectErr...)
				if err != nil && strings.Contains(err.Error(), "s3cr3t") {
					t.Errorf("error %q quotes the kubeconfig", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			v, err := c.ServerVersion(t.Context())
			if tc.serverErr != nil {
				wantErr(t, err, tc.serverErr, "127.0.0.1:1")
				return
			}
			if err != nil {
				t.Fatalf("ServerVersion: %v", err)
			}
			equal(t, "server version", v, "v1.37.2")
			equal(t, "host", c.Host(), cl.Config.Host)
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

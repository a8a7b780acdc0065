package cluster_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestCheck: the check before the push passes against the real API server, says a cluster
// that refuses the token refused the credentials, and says a URL that leads to some other
// HTTP server, or to nothing, is unreachable rather than an apply failure.
func TestCheck(t *testing.T) {
	t.Parallel()
	cl := testenv.SharedCluster(t)
	ctx := t.Context()
	noEnv := func(string) string { return "" }
	kubeconfig := func(server, token string) []byte {
		c := clientcmdapi.NewConfig()
		c.Clusters["c"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: strings.HasPrefix(server, "https://")}
		c.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: token}
		c.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
		c.CurrentContext = "x"
		data, err := clientcmd.Write(*c)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	admin, err := clientcmd.LoadFromFile(cl.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	apiURL := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster].Server
	notKube := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notKube.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		name    string
		opts    cluster.Options
		want    error
		wantMsg string
	}{
		{"the real API server", cluster.Options{Kubeconfig: cl.Kubeconfig, Getenv: noEnv}, nil, ""},
		{"a token it does not know", cluster.Options{KubeconfigData: kubeconfig(apiURL, "not-a-token"), Getenv: noEnv}, cluster.ErrUnauthorized, ""},
		{"another HTTP server", cluster.Options{KubeconfigData: kubeconfig(notKube.URL, "t"), Getenv: noEnv}, cluster.ErrUnreachable, "does not answer as a Kubernetes API server"},
		{"nothing listening", cluster.Options{KubeconfigData: kubeconfig(closed.URL, "t"), Getenv: noEnv}, cluster.ErrUnreachable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := cluster.Connect(ctx, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err = c.Check(cctx)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Check = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Check = %v, want %v with %q", err, tt.want, tt.wantMsg)
			}
			if errors.Is(err, cluster.ErrApply) {
				t.Errorf("Check = %v: nothing was applied", err)
			}
		})
	}
}

// TestCredentials: the secrets of whichever kubeconfig Connect would read, from every file of
// $KUBECONFIG, ~/.kube/config or the data given, with the files its users name.
func TestCredentials(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kubeconfig := func(user, auth string) string {
		return "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://127.0.0.1:1}\n" +
			"contexts:\n- name: " + user + "\n  context: {cluster: c, user: " + user + "}\ncurrent-context: " + user + "\n" +
			"users:\n- name: " + user + "\n  user:\n" + auth
	}
	write("token-file", "token-from-a-file")
	a := write("a.yaml", kubeconfig("a", "    tokenFile: token-file\n"))
	b := write("b.yaml", kubeconfig("b", "    username: admin\n    password: password-in-b\n"))
	x := write("x.yaml", kubeconfig("x", "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: get-token\n"+
		"      interactiveMode: Never\n      env:\n      - {name: VAULT_TOKEN, value: vault-token-in-x}\n"+
		"      - {name: AWS_SECRET_ACCESS_KEY, value: aws-secret-in-x}\n      - {name: DB_PASS, value: db-pass-in-x}\n"+
		"      - {name: AWS_REGION, value: eu-west-1}\n      - {name: USE_TOKEN_CACHE, value: \"true\"}\n"+
		"      - {name: KMS_KEY_ID, value: kms-key-id-in-x}\n      - {name: SSH_KEY_PATH, value: /home/ci/.ssh/id}\n"))
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), []byte(kubeconfig("h", "    token: token-in-home\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	for _, c := range []struct {
		name string
		opts cluster.Options
		want []string
	}{
		{"every file of $KUBECONFIG, and the token file one names", cluster.Options{Getenv: env(map[string]string{"KUBECONFIG": a + string(filepath.ListSeparator) + b})},
			[]string{"token-from-a-file", "password-in-b"}},
		{"~/.kube/config", cluster.Options{Getenv: env(map[string]string{"HOME": home})}, []string{"token-in-home"}},
		{"--kubeconfig wins", cluster.Options{Kubeconfig: b, Getenv: env(map[string]string{"HOME": home})}, []string{"password-in-b"}},
		{"data that does not parse, whole", cluster.Options{KubeconfigData: []byte("token: {not yaml"), Getenv: env(nil)}, []string{"token: {not yaml"}},
		{"nothing to read", cluster.Options{Getenv: env(nil)}, nil},
		{"an exec plugin's secret environment", cluster.Options{Kubeconfig: x, Getenv: env(nil)}, []string{"vault-token-in-x", "aws-secret-in-x", "db-pass-in-x"}},
	} {
		got := strings.Join(cluster.Credentials(c.opts), "\n")
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q missing from %q", c.name, w, got)
			}
		}
		if c.want == nil && strings.TrimSpace(got) != "" {
			t.Errorf("%s: got %q, want nothing", c.name, got)
		}
		for _, plain := range []string{"eu-west-1", "true", "kms-key-id-in-x", "/home/ci/.ssh/id"} {
			if strings.Contains(got, plain) {
				t.Errorf("%s: %q is not a secret (a region, a flag, an id, a path), got %q", c.name, plain, got)
			}
		}
		if strings.Contains(got, "token-in-home") && c.name != "~/.kube/config" {
			t.Errorf("%s: read ~/.kube/config, which Connect would not", c.name)
		}
	}
}

package cluster_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deliverhq/deliver/step/cluster"
)

// TestConnectNotFromProcess: Connect finds the kubeconfig through Options.Getenv only, never
// through the process's environment: neither its HOME (os.UserHomeDir), KUBECONFIG nor the
// in-cluster variables (rest.InClusterConfig reads them from the process). It sets the
// process's environment, so it does not run in parallel.
func TestConnectNotFromProcess(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: c, context: {cluster: c}}]
current-context: c
`
	if err := os.WriteFile(filepath.Join(home, ".kube", "config"), []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("KUBECONFIG", filepath.Join(home, ".kube", "config"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "1")

	_, err := cluster.Connect(t.Context(), cluster.Options{Getenv: func(string) string { return "" }})
	wantErr(t, err, cluster.ErrInvalid, "no home directory ($HOME)")

	// The in-cluster variables of the run's environment are the ones used: outside a pod,
	// the service account's token is missing (rest.InClusterConfig would have said the
	// variables are not set).
	inCluster := map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err = cluster.Connect(t.Context(), cluster.Options{Getenv: func(k string) string { return inCluster[k] }})
	if _, statErr := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token"); statErr == nil {
		t.Skip("running in a pod: the service account's token exists")
	}
	wantErr(t, err, cluster.ErrInvalid, "loading in-cluster configuration", "serviceaccount/token")
	if err != nil && strings.Contains(err.Error(), "must be defined") {
		t.Errorf("the in-cluster variables were read from the process: %v", err)
	}
}

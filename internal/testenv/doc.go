// Package testenv starts real servers for tests, the demo and the benchmarks:
// a git smart-HTTP server (GitServer, backed by `git http-backend`), an OCI
// registry (Registry, backed by go-containerregistry's pkg/registry) and a
// Kubernetes control plane (Cluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok with one fake node).
//
// Every server has two forms: StartX(...) (*X, error) plus a Close or Stop
// method, for plain programs, and NewX(t, ...) for tests, which calls t.Fatal
// when the server cannot start and registers its shutdown with t.Cleanup.
//
// All servers listen on 127.0.0.1 on free ports and keep their state in
// memory or in a temporary directory that is removed when they shut down.
// Nothing here mocks a protocol: the git server needs the git CLI on PATH,
// and the cluster needs the binaries built by `make k8s-bins` (see BinDir).
// The cluster's child processes are Linux-only in one respect: only there
// does the kernel kill them when the process that started them dies.
//
// The only package-level state is the shared cluster behind SharedCluster,
// which is started at most once per process and stopped by Main.
package testenv

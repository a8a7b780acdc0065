// Package citest holds the tests of deliver's CI integrations, which are files rather than Go
// code: action.yml (the GitHub Action), .gitlab-ci-template.yml and templates/deliver.yml (the
// GitLab template and CI/CD component), the Dockerfile, the workflows (the release workflow
// among them), .gitlab-ci.yml (the GitLab catalog pipeline), the example workflows and
// pipelines, and the RBAC example.
//
// The tests run those files the way GitHub's runner and GitLab's runner would, against the
// real servers of internal/testenv (git, registry, Kubernetes control plane), with a deliver
// binary built once per run; and they run the validators pinned here: actionlint (a Go module,
// run with `go run ...@v1.7.12`), and the npm packages of package.json / package-lock.json
// (@action-validator/cli, gitlab-ci-local, and the Node.js 22 gitlab-ci-local needs),
// installed with `npm ci` outside the clone by `make citest-tools` (hack/test-deps.sh, part of
// `make test`). A missing tool is a test failure, never a skip.
package citest

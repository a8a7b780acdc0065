#!/usr/bin/env bash
# The deploy recipe most teams script by hand in CI, used as deliver's baseline:
#
#   git clone; kustomize edit set image; git commit;
#   git pull --rebase && git push, retried up to 5 times;
#   kubectl apply --server-side -k; kubectl rollout status.
#
# Inputs (environment): REPO_URL (with credentials), BRANCH, OVERLAY (overlays/<env>), IMAGE
# (name=repository:tag), KUSTOMIZE, KUBECTL, APPLY (1 to apply), and with APPLY=1 KUBECONFIG,
# NAMESPACE, ROLLOUT (what to pass to `kubectl rollout status`, e.g. deployment/web) and
# TIMEOUT. For the benchmark it prints "bench-phase NAME MICROSECONDS" after each phase and
# "bench-attempt-failed N" for each lost push attempt, on stderr; bash's $EPOCHREALTIME keeps
# the timing free of extra processes.
set -euo pipefail

mark=${EPOCHREALTIME/[.,]/}
phase() {
  local t=${EPOCHREALTIME/[.,]/}
  echo "bench-phase $1 $((t - mark))" >&2
  mark=$t
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export GIT_AUTHOR_NAME=ci GIT_AUTHOR_EMAIL=ci@example.invalid
export GIT_COMMITTER_NAME=ci GIT_COMMITTER_EMAIL=ci@example.invalid

git clone --quiet --branch "$BRANCH" "$REPO_URL" repo
phase clone

cd "repo/$OVERLAY"
"$KUSTOMIZE" edit set image "$IMAGE"
phase edit

cd "$work/repo"
git commit --quiet --all --message "deploy ${IMAGE#*=} to ${OVERLAY##*/}"
phase commit

pushed=0
for attempt in 1 2 3 4 5; do
  if git pull --quiet --rebase origin "$BRANCH" && git push --quiet origin "HEAD:$BRANCH"; then
    pushed=1
    break
  fi
  git rebase --abort >/dev/null 2>&1 || true
  echo "bench-attempt-failed $attempt" >&2
  [ "$attempt" = 5 ] || sleep "0.$((RANDOM % 10))"
done
phase push
if [ "$pushed" != 1 ]; then
  echo "push failed after 5 attempts" >&2
  exit 1
fi

if [ "${APPLY:-0}" = 1 ]; then
  "$KUBECTL" --kubeconfig "$KUBECONFIG" apply --server-side -k "$OVERLAY" >/dev/null
  phase apply
  # shellcheck disable=SC2086 # ROLLOUT is a list of arguments
  "$KUBECTL" --kubeconfig "$KUBECONFIG" rollout status --namespace "$NAMESPACE" --timeout "$TIMEOUT" $ROLLOUT >/dev/null
  phase wait
fi

#!/usr/bin/env bash
# Releases the tag VERSION (vX.Y.Z) checked out at HEAD; `make release` runs it, and
# .github/workflows/release.yml runs that on every v* tag pushed:
#
#   hack/release.sh VERSION IMAGE [REMOTE]
#
# 1. Builds the two-platform image (make image: linux/amd64 and linux/arm64 in one OCI index)
#    and pushes it to IMAGE under VERSION and, when this is the newest release of its line,
#    vX.Y and vX (go run ./hack/release tags).
# 2. Makes the release commit on top of HEAD: action.yml's runs.image becomes
#    docker://IMAGE@DIGEST, and the GitLab template and CI/CD component name IMAGE:VERSION@DIGEST
#    (go run ./hack/release pin). So `uses: deliverhq/deliver@v1` pulls the published image and
#    never builds the Dockerfile, and the three ways to use a release run the same image.
# 3. Points the tags at the release commit: VERSION (annotated), the floating vX.Y and vX, and
#    X.Y.Z, the tag the GitLab CI/CD catalog needs (semantic versions without the v; the GitLab
#    mirror's .gitlab-ci.yml publishes it). With REMOTE, force-pushes those tags there.
#
# The commit and tag dates are HEAD's and the image's timestamps are SOURCE_DATE_EPOCH = HEAD's
# commit time, so a re-run of the same release gives the same image digest and the same release
# commit: re-running a failed or half-done release converges.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: hack/release.sh VERSION IMAGE [REMOTE]}
image=${2:?usage: hack/release.sh VERSION IMAGE [REMOTE]}
remote=${3:-}
GO=${GO:-go}
die() { echo "release: $*" >&2; exit 1; }

# The tags of this release; this also refuses a VERSION that is not a release tag.
mapfile -t tags < <($GO run ./hack/release tags "$version" $(git tag --list 'v*'))
[ ${#tags[@]} -gt 0 ] || die "no tags for $version"

head=$(git rev-parse HEAD)
tagged=$(git rev-parse --verify --quiet "refs/tags/$version^{commit}") || die "no tag $version"
if [ "$tagged" != "$head" ]; then
  # A re-run: the tag already points at the release commit this script made on top of HEAD.
  if [ "$(git rev-parse --verify --quiet "$tagged^")" != "$head" ] ||
    ! git show "$tagged:action.yml" | grep -q '^  image: docker://'; then
    die "HEAD ($head) is not the commit of the tag $version ($tagged): check out the tag"
  fi
  echo "release: $version was released before as $tagged; releasing $head again"
fi
if git show "$head:action.yml" | grep -q '^  image: docker://'; then
  die "HEAD's action.yml already pins an image: tag the commit on main, not a release commit"
fi
[ -z "$(git status --porcelain --untracked-files=no)" ] || die "the work tree has changes"

# 1. The image.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct "$head")
export SOURCE_DATE_EPOCH
push=()
for t in "${tags[@]}"; do push+=("$image:$t"); done
echo "release: building and pushing ${push[*]}"
digest=$(make -s --no-print-directory image VERSION="$version" IMAGE_PUSH="${push[*]}" | tail -n 1)
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || die "make image printed no digest (got: $digest)"

# 2. The release commit, dated like HEAD so that a re-run makes the same commit.
$GO run ./hack/release pin --version "$version" --image "$image" --digest "$digest"
date=$(git log -1 --format=%cI "$head")
export GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date
export GIT_AUTHOR_NAME=${GIT_AUTHOR_NAME:-github-actions[bot]}
export GIT_AUTHOR_EMAIL=${GIT_AUTHOR_EMAIL:-41898282+github-actions[bot]@users.noreply.github.com}
export GIT_COMMITTER_NAME=${GIT_COMMITTER_NAME:-$GIT_AUTHOR_NAME} GIT_COMMITTER_EMAIL=${GIT_COMMITTER_EMAIL:-$GIT_AUTHOR_EMAIL}
git commit -q -m "release $version: pin the image to $image@$digest" \
  -m "action.yml runs docker://$image@$digest; the GitLab template and CI/CD component run $image:$version@$digest." \
  -- action.yml .gitlab-ci-template.yml templates/deliver.yml
release=$(git rev-parse HEAD)

# 3. The tags.
git tag -f -a "$version" -m "deliver $version" -m "image $image@$digest" "$release" >/dev/null
refspecs=("+refs/tags/$version:refs/tags/$version")
for t in "${tags[@]:1}" "${version#v}"; do
  git tag -f "$t" "$release" >/dev/null
  refspecs+=("+refs/tags/$t:refs/tags/$t")
done
echo "release: $version is $release (tags ${tags[*]} ${version#v}), image $image@$digest"
if [ -n "$remote" ]; then
  git push --quiet "$remote" "${refspecs[@]}"
  echo "release: pushed the tags to $remote"
fi
if [ -n "${GITHUB_OUTPUT:-}" ]; then
  {
    echo "digest=$digest"
    echo "commit=$release"
  } >>"$GITHUB_OUTPUT"
fi

#!/usr/bin/env bash
# Releases argocd-agent-addon VERSION: the manager image for every platform, and the chart with
# that version, its appVersion, and the image pinned by digest, pushed to an OCI registry.
# VERSION is the one source of the binary's version, the image tag, and the chart's version
# (without the v) and appVersion. `make release` runs it.
#
#   VERSION=v0.2.0 hack/release.sh                        # push to quay.io/argocd-agent-addon
#   VERSION=v0.2.0 DRY_RUN=1 hack/release.sh              # build and write, push nothing
#   VERSION=v0.2.0 REGISTRY=localhost:5000/x PLAIN_HTTP=1 hack/release.sh
#
# Writes to $OUTPUT/$VERSION (default _output/release/VERSION): image/ (an OCI layout), bin/
# (the binaries in it), argocd-agent-addon-X.Y.Z.tgz (the chart), and release.env (what was
# released, for scripts). Everything is built and checked before anything is pushed; then the
# image goes to $REGISTRY/argocd-agent-addon:VERSION (credentials from `docker login`) and the
# chart to oci://$REGISTRY/charts (credentials from `helm registry login`), whence users
# `helm install argocd-agent-addon oci://$REGISTRY/charts/argocd-agent-addon --version X.Y.Z`.
# A pushed version is never moved: an image tag with another digest or an existing chart
# version stops the release. Pushing needs a clean tree at the tag VERSION (ALLOW_UNTAGGED=1
# waives that, for tests).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${VERSION:?VERSION=vX.Y.Z is required}"
REGISTRY=${REGISTRY:-quay.io/argocd-agent-addon}
OUTPUT=${OUTPUT:-$ROOT/_output/release}
[[ $OUTPUT == /* ]] || OUTPUT=$PWD/$OUTPUT # relative to where it was run, before the cd
cd "$ROOT"
IMAGE_PLATFORMS=${IMAGE_PLATFORMS:-linux/amd64 linux/arm64}
case ${DRY_RUN:-} in
"" | 0 | false) DRY_RUN= ;;
*) DRY_RUN=1 ;;
esac

log() { echo "release: $*" >&2; }

# Semantic versioning with a leading v: Helm requires SemVer 2 chart versions.
if ! [[ $VERSION =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$ ]]; then
	log "VERSION $VERSION: want vMAJOR.MINOR.PATCH[-PRERELEASE], e.g. v0.2.0 or v0.2.0-rc.1"
	exit 2
fi
if [[ -z $DRY_RUN && -z ${ALLOW_UNTAGGED:-} ]]; then
	if [[ -n $(git status --porcelain) ]]; then
		log "the tree has changes: a release is built from the commit tagged $VERSION only"
		exit 2
	fi
	if ! git tag --points-at HEAD | grep -qx -- "$VERSION"; then
		log "HEAD is not tagged $VERSION: tag it (git tag -a $VERSION) first"
		exit 2
	fi
fi
chart_version=${VERSION#v}
image=$REGISTRY/argocd-agent-addon:$VERSION
out=$OUTPUT/$VERSION
helm=${HELM:-}
if [[ -z $helm ]]; then
	env -u CGO_ENABLED -u GOFLAGS "$ROOT/hack/test-tools.sh" helm
	helm=$("$ROOT/hack/test-tools.sh" print-env | sed -n 's/^export HELM=//p')
fi
plain_http=()
[[ -n ${PLAIN_HTTP:-} ]] && plain_http=(--plain-http)

rm -rf "$out" && mkdir -p "$out"
log "building $image for $IMAGE_PLATFORMS"
make --no-print-directory image VERSION="$VERSION" IMAGE="$image" IMAGE_OCI="$out/image" \
	IMAGE_PLATFORMS="$IMAGE_PLATFORMS" BINARIES_DIR="$out/bin" >&2
digest=$(go run ./hack/image digest --oci "$out/image")

# The chart as released: a copy whose image values name this image by tag and digest.
staged=$out/chart/argocd-agent-addon
mkdir -p "$(dirname "$staged")"
cp -r charts/argocd-agent-addon "$staged"
awk -v repo="$REGISTRY/argocd-agent-addon" -v tag="$VERSION" -v digest="$digest" '
	/^image:/ { in_image = 1; print; next }
	/^[^ #]/ { in_image = 0 }
	in_image && /^  repository:/ { print "  repository: " repo; seen++; next }
	in_image && /^  tag:/ { print "  tag: " tag; seen++; next }
	in_image && /^  digest:/ { print "  digest: " digest; seen++; next }
	{ print }
	END { if (seen != 3) { print "image.repository, image.tag and image.digest not all found in values.yaml" > "/dev/stderr"; exit 1 } }
' charts/argocd-agent-addon/values.yaml >"$staged/values.yaml"
"$helm" package "$staged" --version "$chart_version" --app-version "$VERSION" --destination "$out" >&2
archive=$out/argocd-agent-addon-$chart_version.tgz
# What a user installs must run exactly the image built above.
rendered=$("$helm" template argocd-agent-addon "$archive" --show-only templates/deployment.yaml | sed -n 's/^ *image: "\(.*\)"$/\1/p')
if [[ $rendered != "$image@$digest" ]]; then
	log "the packaged chart runs $rendered, want $image@$digest"
	exit 1
fi
rm -rf "$out/chart"

if [[ -z $DRY_RUN ]]; then
	if "$helm" show chart "oci://$REGISTRY/charts/argocd-agent-addon" --version "$chart_version" ${plain_http[@]+"${plain_http[@]}"} >/dev/null 2>&1; then
		log "chart argocd-agent-addon $chart_version is already in oci://$REGISTRY/charts: a released version is never replaced"
		exit 1
	fi
	log "pushing $image"
	# --immutable: a tag already at another digest stops the release; at this one, it is a rerun.
	pushed=$(go run ./hack/image push --oci "$out/image" --tag "$image" --immutable ${plain_http[@]+"${plain_http[@]}"})
	if [[ $pushed != "$digest" ]]; then
		log "the registry has $image at $pushed, not the built $digest"
		exit 1
	fi
	log "pushing the chart to oci://$REGISTRY/charts"
	"$helm" push "$archive" "oci://$REGISTRY/charts" ${plain_http[@]+"${plain_http[@]}"} >&2
fi

cat >"$out/release.env" <<ENV
VERSION=$VERSION
CHART_VERSION=$chart_version
IMAGE=$image
IMAGE_DIGEST=$digest
CHART=oci://$REGISTRY/charts/argocd-agent-addon
CHART_ARCHIVE=$archive
PUSHED=$([[ -z $DRY_RUN ]] && echo true || echo false)
ENV
log "released $VERSION: image $image@$digest, chart oci://$REGISTRY/charts/argocd-agent-addon $chart_version$([[ -n $DRY_RUN ]] && echo " (dry run: nothing pushed, written to $out)")"

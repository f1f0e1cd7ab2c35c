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
# Writes to $OUTPUT/$VERSION (default _output/release/VERSION): image/ (an OCI layout),
# argocd-agent-addon-X.Y.Z.tgz (the chart), and release.env (what was released, for scripts).
# Pushes the image to $REGISTRY/argocd-agent-addon:VERSION (credentials from `docker login`) and
# the chart to oci://$REGISTRY/charts (credentials from `helm registry login`): users install
# `helm install argocd-agent-addon oci://$REGISTRY/charts/argocd-agent-addon --version X.Y.Z`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${VERSION:?VERSION=vX.Y.Z is required}"
REGISTRY=${REGISTRY:-quay.io/argocd-agent-addon}
OUTPUT=${OUTPUT:-$ROOT/_output/release}
DRY_RUN=${DRY_RUN:-}
PLAIN_HTTP=${PLAIN_HTTP:-}
IMAGE_PLATFORMS=${IMAGE_PLATFORMS:-linux/amd64 linux/arm64}

log() { echo "release: $*" >&2; }

# Semantic versioning with a leading v: Helm requires SemVer 2 chart versions.
if ! [[ $VERSION =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]]; then
	log "VERSION $VERSION: want vMAJOR.MINOR.PATCH[-PRERELEASE], e.g. v0.2.0 or v0.2.0-rc.1"
	exit 2
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
[[ -n $PLAIN_HTTP ]] && plain_http=(--plain-http)

rm -rf "$out" && mkdir -p "$out"
cd "$ROOT"
log "building $image for $IMAGE_PLATFORMS"
make --no-print-directory image VERSION="$VERSION" IMAGE="$image" IMAGE_OCI="$out/image" IMAGE_PLATFORMS="$IMAGE_PLATFORMS" >&2
digest=$(go run ./hack/image digest --oci "$out/image")
if [[ -z $DRY_RUN ]]; then
	log "pushing $image"
	pushed=$(go run ./hack/image push --oci "$out/image" --tag "$image" "${plain_http[@]}")
	if [[ $pushed != "$digest" ]]; then
		log "the registry has $image at $pushed, not the built $digest"
		exit 1
	fi
fi

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
	log "pushing the chart to oci://$REGISTRY/charts"
	"$helm" push "$archive" "oci://$REGISTRY/charts" "${plain_http[@]}" >&2
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

# The manager image, as hack/image builds it (make image): the static binary of `make binaries`
# on an empty base, nothing else to patch. Build the binaries first, then the image, for one
# platform or several:
#
#   make binaries IMAGE_PLATFORMS="linux/amd64 linux/arm64"
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(git describe --tags) --build-arg REVISION=$(git rev-parse --short HEAD) -t REPO:TAG .
#   buildah build --platform linux/amd64 --build-arg VERSION=... --build-arg REVISION=... -t REPO:TAG .
#
# test/dockerfile builds it with buildah and requires the same files, user, entrypoint, command,
# working directory and labels as hack/image's image of the same binary.
FROM scratch
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION
ARG REVISION
COPY --chmod=0755 bin/${TARGETOS}_${TARGETARCH}/argocd-agent-addon /usr/local/bin/argocd-agent-addon
LABEL org.opencontainers.image.source="https://github.com/argocd-agent-addon/argocd-agent-addon" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Numeric, so that Kubernetes' runAsNonRoot can check it without a passwd file.
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/usr/local/bin/argocd-agent-addon"]
CMD ["manager"]

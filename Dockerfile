# Multi-stage: a static binary on distroless, running as non-root.
FROM golang:1.25 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd cmd
COPY pkg pkg
COPY manifests manifests
ARG VERSION=v0.0.0-dev
ARG COMMIT=unknown
RUN CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/argocd-agent-addon/argocd-agent-addon/pkg/version.Version=${VERSION} -X github.com/argocd-agent-addon/argocd-agent-addon/pkg/version.GitCommit=${COMMIT}" \
    -o /out/argocd-agent-addon ./cmd/argocd-agent-addon

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/argocd-agent-addon /usr/local/bin/argocd-agent-addon
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/argocd-agent-addon"]
CMD ["manager"]

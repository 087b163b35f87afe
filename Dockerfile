# syntax=docker/dockerfile:1
# The Signet operator image: a static, stripped Go binary on distroless, running as the
# non-root user 65532. Build from the repository root:
#   docker build -t ghcr.io/signet-operator/signet:v0.1.0 .
# Without Docker: make release (internal/release, docs/release.md) builds an equivalent image.
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# (the builder runs natively and cross-compiles; no emulation needed).

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS builder
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /workspace
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
# Dependencies first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY main.go ./
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
# `signet version` prints these (make docker-build passes them; see internal/cli).
ARG VERSION=dev
ARG COMMIT=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags="-s -w -X github.com/signet-operator/signet/internal/cli.Version=${VERSION} -X github.com/signet-operator/signet/internal/cli.Commit=${COMMIT}" \
      -o /out/signet .

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="signet" \
      org.opencontainers.image.description="Keeps Kyverno image-signature policies, cosign key rotation and report summaries in sync with TrustedRegistry resources" \
      org.opencontainers.image.source="https://github.com/signet-operator/signet"
WORKDIR /
COPY --from=builder /out/signet /signet
USER 65532:65532
ENTRYPOINT ["/signet"]

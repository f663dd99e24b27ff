# syntax=docker/dockerfile:1

# nlbridge as a static binary on distroless, running as nonroot (65532).
#
#   docker build --build-arg VERSION=1.2.3 -t nlbridge .
#   docker run --rm --network host nlbridge
#
# Run it with the host's network (--network host, or network_mode: host as in
# docker-compose.yml): nlbridge watches the network namespace it runs in.
# It needs no capabilities for that. Needs BuildKit (the default builder
# since Docker 23) for the cache mounts and COPY --chmod.

# The golang images set GOTOOLCHAIN=local, so the tag must give at least the
# go line of go.mod (1.26.8); 1.26 follows the latest 1.26 patch release.
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
# VERSION must be a semantic version: the NATS micro service rejects others.
ARG VERSION=0.1.0-dev
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/nlbridge ./cmd/nlbridge

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/nlbridge /nlbridge
# Read-only for everyone: the nonroot user must read it and never change it.
COPY --chmod=0444 deploy/nlbridge.yaml /etc/nlbridge/nlbridge.yaml
USER 65532:65532
# Prometheus metrics (metrics.listen in deploy/nlbridge.yaml).
EXPOSE 9108
ENTRYPOINT ["/nlbridge"]
CMD ["run", "--config", "/etc/nlbridge/nlbridge.yaml"]

# syntax=docker/dockerfile:1
#
# Coffer's container image: a static binary (CGO off; SQLite is pure Go) on distroless,
# running as the nonroot user. The root filesystem can be read-only: the only writes go to the
# data directory, /data, a volume (and with Postgres and AWS KMS not even there).
#
#   docker build -t coffer --build-arg VERSION=$(git describe --always) --build-arg COMMIT=$(git rev-parse HEAD) .
#   docker build -t coffer-kms --target kms .     # the KMS test server, for docker-compose only
#
# No secret is baked in: settings come from the environment at run time (README.md).

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.date=${DATE}" \
        -o /out/coffer-server ./cmd/server \
    && go build -trimpath -ldflags "-s -w" -o /out/kmstest ./internal/crypto/awskms/kmstest/cmd \
    && mkdir -p /out/data

# The KMS test server: local development only (docker-compose.yml). It checks only that
# requests look SigV4-signed, so it must never be reachable from outside a developer's machine.
FROM gcr.io/distroless/static-debian12:nonroot AS kms
COPY --from=build /out/kmstest /kmstest
USER 65532:65532
EXPOSE 4599
ENTRYPOINT ["/kmstest", "-listen", "0.0.0.0:4599"]

# Coffer (the default target, last).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/coffer-server /coffer-server
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV COFFER_LISTEN=0.0.0.0:8080 \
    COFFER_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 CMD ["/coffer-server", "healthcheck"]
ENTRYPOINT ["/coffer-server"]

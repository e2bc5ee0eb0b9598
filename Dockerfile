# payrails-mtls-proxy: one static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) -t payrails-mtls-proxy .
#   docker run --rm --read-only --cap-drop=ALL --security-opt no-new-privileges --stop-timeout 40 \
#     -v "$PWD/certs:/certs:ro" -e PAYRAILS_PROXY_UPSTREAM=https://api.acme.payrails.io payrails-mtls-proxy
#
# Without a registry (podman, offline): scripts/image.sh builds this file into
# localhost/payrails-mtls-proxy:dev, and scripts/image.sh --pkcs11 its pkcs11 target into
# localhost/payrails-mtls-proxy:dev-pkcs11.
#
# With a configuration file, mount it at /etc/payrails-mtls-proxy/config.yaml and run
# `serve --config /etc/payrails-mtls-proxy/config.yaml` (or set PAYRAILS_PROXY_CONFIG).
# The environment below beats the file (flags > environment > file > defaults): change
# listen addresses with -e, not in the file, and with several upstreams in the file set
# PAYRAILS_PROXY_CERT_DIR to empty (an empty variable counts as unset). See
# docs/deployment.md.

# The base images are build arguments whose defaults are the public images. GO_IMAGE
# carries the release toolchain that go.mod pins (toolchain go1.27.3; scripts/build.sh sets
# GOTOOLCHAIN to it, so another Go would fetch it first; like the golang images, it must have
# gcc and libc6-dev for the pkcs11 target's cgo). CC_BASE_IMAGE is the pkcs11 target's glibc
# base. Without a registry, scripts/image.sh makes local equivalents and passes them in.
ARG GO_IMAGE=golang:1.27.3-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
ARG CC_BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# The build runs on the builder's own platform and cross-compiles (no emulation):
# TARGETOS/TARGETARCH come from `docker buildx build --platform ...`.
FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
# scripts/build.sh is the only place the release build command lives; CI runs it too.
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH OUT=/out/payrails-mtls-proxy bash scripts/build.sh "$VERSION"

# The pkcs11 flavour (keys in an HSM, DESIGN.md "Keys in an HSM"), built only on request:
#   docker build --target pkcs11 --build-arg VERSION=1.2.3 -t payrails-mtls-proxy:1.2.3-pkcs11 .
# The binary is built with cgo and -tags pkcs11 (scripts/build.sh --pkcs11), dynamically linked
# against glibc, because it loads the HSM vendor's PKCS#11 library with dlopen: it is built
# natively (no cross-compiling cgo) and runs on a glibc base. cc-debian12 carries glibc,
# libstdc++ and OpenSSL, which vendors' PKCS#11 libraries (and SoftHSM2) need; the library
# itself is the vendor's: derive an image that copies it in, or mount it, and name it in
# key_uri's module-path.
FROM ${GO_IMAGE} AS build-pkcs11
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN OUT=/out/payrails-mtls-proxy bash scripts/build.sh --pkcs11 "$VERSION"

FROM ${CC_BASE_IMAGE} AS pkcs11
ARG VERSION=dev
LABEL org.opencontainers.image.title="payrails-mtls-proxy" \
      org.opencontainers.image.description="Sidecar: plain HTTP in, Payrails API out over mutual TLS; the client key may stay in a PKCS#11 token (HSM)" \
      org.opencontainers.image.source="https://github.com/mtlsproxy/payrails-mtls-proxy" \
      org.opencontainers.image.version="$VERSION-pkcs11"
COPY --from=build-pkcs11 /out/payrails-mtls-proxy /payrails-mtls-proxy
# The same ports, folder, user and health check as the default image below (see there).
ENV PAYRAILS_PROXY_LISTEN=127.0.0.1:8080 \
    PAYRAILS_PROXY_ADMIN_LISTEN=0.0.0.0:9090 \
    PAYRAILS_PROXY_CERT_DIR=/certs
USER nonroot:nonroot
EXPOSE 8080 9090
VOLUME /certs
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/payrails-mtls-proxy", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/payrails-mtls-proxy"]
CMD ["serve"]

# static-debian12: CA certificates, /etc/passwd with nonroot (65532), no shell, no libc.
FROM ${BASE_IMAGE}
ARG VERSION=dev
LABEL org.opencontainers.image.title="payrails-mtls-proxy" \
      org.opencontainers.image.description="Sidecar: plain HTTP in, Payrails API out over mutual TLS with a hot-reloaded client certificate" \
      org.opencontainers.image.source="https://github.com/mtlsproxy/payrails-mtls-proxy" \
      org.opencontainers.image.version="$VERSION"
COPY --from=build /out/payrails-mtls-proxy /payrails-mtls-proxy

# Proxy port on loopback: a sidecar shares its pod's (or compose service's) network
# namespace, so the application reaches it at 127.0.0.1:8080 while the merchant's
# identity stays off the network. Serving other hosts needs PAYRAILS_PROXY_LISTEN=0.0.0.0:8080,
# PAYRAILS_PROXY_ALLOW_CIDRS set to their networks, and access.proxy_auth_file.
# Admin port on all interfaces: kubelet probes and Prometheus come from outside the
# namespace, and /healthz, /readyz, /metrics and /certs expose no key material.
# Certificates: the folder /certs (a Kubernetes Secret mounted as a directory, never with
# subPath, or a read-only bind mount), re-read when files change.
ENV PAYRAILS_PROXY_LISTEN=127.0.0.1:8080 \
    PAYRAILS_PROXY_ADMIN_LISTEN=0.0.0.0:9090 \
    PAYRAILS_PROXY_CERT_DIR=/certs
USER nonroot:nonroot
EXPOSE 8080 9090
VOLUME /certs

# No shell or curl in the image: the binary asks its own admin port, the one serve listens
# on (PAYRAILS_PROXY_ADMIN_LISTEN, else PAYRAILS_PROXY_CONFIG's admin_listen; 0.0.0.0 is
# asked on 127.0.0.1). /readyz is 200 only while a valid client certificate is loaded for
# every upstream.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/payrails-mtls-proxy", "health"]
# SIGTERM: stop accepting, let requests in flight finish for up to timeouts.shutdown (30s),
# so give `docker stop` more than that (--stop-timeout 40, compose stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/payrails-mtls-proxy"]
CMD ["serve"]

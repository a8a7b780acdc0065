# syntax=docker/dockerfile:1
# deliver's image: one static binary, a shell and CA certificates, nothing else.
#
# - The binary is static (CGO_ENABLED=0) and reproducible (-trimpath); VERSION is stamped into it.
# - /bin/sh is Debian's static busybox, with its applets linked: the GitLab runner pipes the job
#   script into the image's shell (the template sets `entrypoint: [""]`), and GitHub's docker
#   action runs the ENTRYPOINT directly.
# - No USER and no WORKDIR: GitHub mounts the workspace at /github/workspace, makes it the working
#   directory and needs root to write its file commands; GitLab runs the script in the build dir.
# - Exec-form ENTRYPOINT, so action inputs reach the binary exactly as the runner passes them.
#
# `make image` builds the same file system without a Docker engine (hack/image).

ARG GO_VERSION=1.26.8
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X github.com/deliverhq/deliver/step.version=${VERSION}" \
      -o /out/usr/local/bin/deliver .

FROM debian:${DEBIAN_RELEASE}-slim AS rootfs
RUN apt-get update \
 && apt-get install -y --no-install-recommends busybox-static ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The same tree hack/image assembles: busybox and its applets, the CA bundle, root's account.
RUN set -eu; \
    mkdir -p /rootfs/bin /rootfs/sbin /rootfs/usr/bin /rootfs/usr/sbin /rootfs/usr/local/bin \
             /rootfs/etc/ssl/certs /rootfs/root /rootfs/tmp; \
    cp /bin/busybox /rootfs/bin/busybox; \
    for applet in $(/bin/busybox --list-full); do \
      [ -e "/rootfs/$applet" ] || ln -s /bin/busybox "/rootfs/$applet"; \
    done; \
    ln -sf busybox /rootfs/bin/sh; \
    cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ca-certificates.crt; \
    printf 'root:x:0:0:root:/root:/bin/sh\n' > /rootfs/etc/passwd; \
    printf 'root:x:0:\n' > /rootfs/etc/group; \
    chmod 1777 /rootfs/tmp; chmod 700 /rootfs/root

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title=deliver \
      org.opencontainers.image.source=https://github.com/deliverhq/deliver \
      org.opencontainers.image.version=${VERSION}
COPY --from=rootfs /rootfs/ /
COPY --from=build /out/ /
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
ENTRYPOINT ["/usr/local/bin/deliver"]

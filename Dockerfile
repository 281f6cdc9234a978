# execgate in a container: `execgate init` is PID 1. The default CMD is the MCP server on
# stdin/stdout (served by init in-process: it supervises every session it starts); any
# other CMD is supervised.
#
#   docker build -t execgate .                      # builds from source (needs a Rust 1.88+ image)
#   docker run --rm -i execgate                     # the MCP server on stdio
#   docker run --rm execgate bash -c 'make test'    # a supervised command
#
# Build args:
#   BASE_IMAGE     the runtime base (default debian:bookworm-slim); tests/container/run
#                  passes a locally debootstrapped bookworm, since no registry is reachable
#                  there.
#   RUST_IMAGE     the builder (default rust:1-slim-bookworm). Debian bookworm's own rustc
#                  (1.63) is too old for this workspace (edition 2024, rust-version 1.88).
#   EXECGATE_FROM  `source` (default): build in RUST_IMAGE. `prebuilt`: take `execgate` from
#                  the root of the build context instead, a release binary built on a
#                  glibc <= 2.36 host (bookworm); tests/container/run does this, building
#                  with the host's cargo and staging a context of Dockerfile + binary,
#                  with RUST_IMAGE=BASE_IMAGE (no Rust image is needed then).
# See README.md ("Containers") for the flags each engine needs, and why.

ARG BASE_IMAGE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-slim-bookworm

# One build stage for both ways, chosen in a RUN rather than by `FROM build-${ARG}`:
# buildah (podman build) treats a stage named through an ARG as unused and then tries to
# pull it as an image. For `prebuilt`, RUST_IMAGE may be any image with a shell.
FROM ${RUST_IMAGE} AS build
ARG EXECGATE_FROM=source
WORKDIR /src
COPY . .
RUN case "$EXECGATE_FROM" in \
      source) [ -e /usr/include/seccomp.h ] \
                || { apt-get update -q && apt-get install -y -q --no-install-recommends \
                       libseccomp-dev; } \
              && cargo build --release --locked --bin execgate \
              && install -D -m 0755 target/release/execgate /out/execgate ;; \
      prebuilt) install -D -m 0755 execgate /out/execgate ;; \
      *) echo "EXECGATE_FROM must be source or prebuilt, not $EXECGATE_FROM" >&2; exit 1 ;; \
    esac

FROM ${BASE_IMAGE}
# bash is the shell execgate supervises; slim and minbase images have it already, and
# libseccomp2 (execgate's one library beyond glibc) too, as apt needs it: installed only
# if missing, so no network is needed for a Debian base.
RUN dpkg-query -W -f='${Status}' libseccomp2 2>/dev/null | grep -q 'ok installed' \
    || { apt-get update -q && apt-get install -y -q --no-install-recommends libseccomp2 \
         && rm -rf /var/lib/apt/lists/*; }
COPY --from=build /out/execgate /usr/local/bin/execgate
WORKDIR /workspace
# PID 1: reaps orphans, forwards SIGTERM & co. to the tree, exits with the CMD's status.
ENTRYPOINT ["execgate", "init", "--"]
# The MCP server on stdin/stdout (`docker run -i`), every exec of every call decided.
# `execgate init` recognises its own `mcp` and serves it in-process as PID 1.
CMD ["execgate", "mcp"]

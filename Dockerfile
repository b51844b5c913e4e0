# pi-agent in a minimal image: the static musl binary, the default pipeline and guests, and
# nothing else — no shell, no package manager, no libc, no CA files (rustls carries its own
# root certificates: webpki-roots). It packages what `just dist <arch>` left in dist/; no
# image is pulled and nothing is compiled here, so it builds offline in a second.
#
#   just dist aarch64 && docker build --platform linux/arm64 -t pi-agent .   # for the Pi
#   just dist x86_64  && docker build --platform linux/amd64 -t pi-agent .   # for a PC
#
# Needs BuildKit (the default builder since Docker 23; Debian's docker.io 20.10 needs
# DOCKER_BUILDKIT=1): it fills in TARGETARCH and builds only the stage for that platform.
#
# Layout (docker-compose.yml mounts the live pipeline over /app, read-only):
#   /usr/local/bin/pi-agent      the binary (entrypoint; `run` by default)
#   /app/pipeline.toml           the default pipeline (PIPELINE_MANIFEST)
#   /app/guests/dist/*.wasm      its guests; /app/guests/fixtures for `pipeline test`
#   /data                        DATA_DIR: database and compile cache; mount a volume here

# dist/ is named after Rust's architectures, Docker's platforms after Go's.
FROM scratch AS dist-amd64
COPY dist/x86_64/ /

FROM scratch AS dist-arm64
COPY dist/aarch64/ /

FROM dist-${TARGETARCH} AS dist

FROM scratch
COPY --from=dist /pi-agent /usr/local/bin/pi-agent
COPY --from=dist /pipeline.toml /app/pipeline.toml
COPY --from=dist /guests/ /app/guests/
# A numeric user: there is no /etc/passwd to look a name up in. Directories made by WORKDIR
# after USER belong to that user, so a fresh named volume on /data is writable by it.
USER 65532:65532
WORKDIR /data
WORKDIR /app
ENV PIPELINE_MANIFEST=/app/pipeline.toml \
    DATA_DIR=/data
ENTRYPOINT ["/usr/local/bin/pi-agent"]
CMD ["run"]

# Multi-stage build: a Rust toolchain image compiles the release binary; the runtime image
# holds only the binary, runs as a non-root user and needs no shell (the health check is
# the binary's own `healthcheck` subcommand).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin comfy-sentinel \
 && install -d -o 65532 -g 65532 /out/data

FROM debian:bookworm-slim
LABEL org.opencontainers.image.title="comfy-sentinel" \
      org.opencontainers.image.description="Prometheus exporter and alerting sidecar for GPU generative-workflow servers"
COPY --from=build /src/target/release/comfy-sentinel /usr/local/bin/comfy-sentinel
COPY --from=build --chown=65532:65532 /out/data /var/lib/comfy-sentinel
WORKDIR /var/lib/comfy-sentinel
USER 65532:65532
EXPOSE 9188
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/comfy-sentinel", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/comfy-sentinel"]
CMD ["run"]

# Multi-stage build: compile with the Rust toolchain, ship a slim non-root runtime.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
COPY tests ./tests
COPY examples ./examples
RUN cargo build --release --locked --bin imagegen

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app imagegen \
 && mkdir -p /app/out && chown imagegen /app/out
COPY --from=build /src/target/release/imagegen /usr/local/bin/imagegen
COPY config/default.toml /app/config/default.toml
WORKDIR /app
USER 10001
ENV IMAGEGEN__OUTPUT__URL=file:///app/out
ENTRYPOINT ["imagegen"]
CMD ["--help"]

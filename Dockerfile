# syntax=docker/dockerfile:1

# ---- build: compile the `shop` service and the `seed` tool ----
FROM rust:1.95-bookworm AS builder
WORKDIR /app

# The whole workspace: the root package plus its member crates.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY entity ./entity
COPY migration ./migration
COPY seed ./seed

# The registry cache survives between builds; target/ stays in the layer so
# the runtime stage can copy the binaries out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release --locked -p shop -p seed

# ---- runtime: a slim image with the two binaries, run as a non-root user ----
FROM debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system shop \
    && useradd --system --gid shop --home-dir /app --no-create-home --shell /usr/sbin/nologin shop

COPY --from=builder /app/target/release/shop /usr/local/bin/shop
COPY --from=builder /app/target/release/seed /usr/local/bin/seed

# /app/data is where the embedded SQLite default would write; owned by the app user.
WORKDIR /app
RUN mkdir -p /app/data && chown -R shop:shop /app
USER shop

ENV HOST=0.0.0.0
EXPOSE 3000

ENTRYPOINT ["shop"]
CMD ["serve"]

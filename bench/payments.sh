#!/usr/bin/env bash
# Payment benchmark on PostgreSQL + Redis: how fast one `shop worker` drains 10,000 queued
# payments, and the delay from an order's commit to its /orders event at a client.
# Needs PostgreSQL and Redis on 127.0.0.1 (as in .ci/run). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shop-target}"
cargo build --release --quiet --workspace --bins --example payments_bench

db="shop_bench_$$"
admin_url="${BENCH_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
psql "$admin_url" -qc "CREATE DATABASE $db"
trap 'psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT

export SHOP_BIN_DIR="$CARGO_TARGET_DIR/release"
export DATABASE_URL="${admin_url%/*}/$db"
export REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}"
export REDIS_KEY_PREFIX="bench-$$"
export JWT_SECRET="bench-secret-bench-secret-bench-secret"
export HOST=127.0.0.1 PORT="${BENCH_PORT:-3900}"
export PAYMENT_LATENCY_MS=0 WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-32}"
export DATABASE_MAX_CONNECTIONS=40 BCRYPT_COST=4 LOG_FORMAT=json RUST_LOG=warn RATE_LIMIT_PER_SECOND=0

"$SHOP_BIN_DIR/seed" --products 0 >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; $(psql "$admin_url" -Atc 'show server_version' | cut -d' ' -f1) PostgreSQL, Redis $(redis-cli -u "$REDIS_URL" info server | awk -F: '/redis_version/ {print $2}' | tr -d '\r')"
"$SHOP_BIN_DIR/examples/payments_bench"

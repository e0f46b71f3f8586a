#!/usr/bin/env bash
# Event delivery benchmark on PostgreSQL + Redis: change → Socket.IO, SSE and webhook
# listener, p50 and p99, at 100 orders/s and at saturation; `POST /orders` with Redis up
# and stopped. Starts a Redis of its own (it stops and restarts it), so the shared one is
# left alone. Needs PostgreSQL on 127.0.0.1 and redis-server. Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shop-target}"
cargo build --release --quiet --workspace --bins --example events_bench

db="shop_bench_events_$$"
admin_url="${BENCH_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export BENCH_REDIS_PORT="${BENCH_REDIS_PORT:-6391}"
redis-server --daemonize yes --bind 127.0.0.1 --port "$BENCH_REDIS_PORT" --save "" --appendonly no >/dev/null
psql "$admin_url" -qc "CREATE DATABASE $db"
cleanup() {
  redis-cli -p "$BENCH_REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

export SHOP_BIN_DIR="$CARGO_TARGET_DIR/release"
export DATABASE_URL="${admin_url%/*}/$db"
export REDIS_URL="redis://127.0.0.1:$BENCH_REDIS_PORT"
export JWT_SECRET="bench-secret-bench-secret-bench-secret"
export HOST=127.0.0.1 PORT="${BENCH_PORT:-3901}"
export PAYMENT_LATENCY_MS=0 WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-32}" SWEEP_INTERVAL=1s
export WEBHOOK_ALLOW_PRIVATE=true
export DATABASE_MAX_CONNECTIONS=40 BCRYPT_COST=4 LOG_FORMAT=json RUST_LOG=error RATE_LIMIT_PER_SECOND=0

"$SHOP_BIN_DIR/seed" --products 0 >/dev/null
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; PostgreSQL $(psql "$admin_url" -Atc 'show server_version' | cut -d' ' -f1), Redis $(redis-server --version | grep -o 'v=[0-9.]*' | cut -d= -f2)"
"$SHOP_BIN_DIR/examples/events_bench"

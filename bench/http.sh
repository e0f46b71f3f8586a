#!/usr/bin/env bash
# HTTP benchmark on PostgreSQL + Redis: starts the release build, loads it with wrk, and
# prints one table: requests/s and p50/p99 latency per endpoint at 64 and 256 connections,
# GET /health (the server's own ceiling), pgbench running an order's SQL (the database's
# ceiling), and the server's peak RSS. Needs PostgreSQL and Redis on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shop-target}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --quiet --workspace --bins --example payments_bench

duration="${BENCH_SECONDS:-10}"
db="shop_bench_$$"
admin_url="${BENCH_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
work=$(mktemp -d)
psql "$admin_url" -qc "CREATE DATABASE $db"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bin="$CARGO_TARGET_DIR/release"
export DATABASE_URL="${admin_url%/*}/$db"
export REDIS_URL="${BENCH_REDIS_URL:-redis://127.0.0.1:6379}" REDIS_KEY_PREFIX="bench-$$"
export JWT_SECRET="bench-secret-bench-secret-bench-secret"
export HOST=127.0.0.1 PORT="${BENCH_PORT:-3901}" WORKERS=0 RATE_LIMIT_PER_SECOND=0
export DATABASE_MAX_CONNECTIONS="${DATABASE_MAX_CONNECTIONS:-32}" LOG_FORMAT=json RUST_LOG=warn
base="http://127.0.0.1:$PORT"

"$bin/seed" --products 0 >/dev/null
"$bin/shop" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null && break; sleep 0.1; done

# 1,000 products with stock enough for every run, and a client to order with.
psql "$DATABASE_URL" -q <<SQL
INSERT INTO products (id, name, description, price_cents, stock, created_at, updated_at)
SELECT gen_random_uuid(), 'Bench product ' || g, 'For load', 999, 100000000, now(), now()
FROM generate_series(1, 1000) g;
CREATE TABLE bench_products AS SELECT row_number() OVER (ORDER BY id) AS n, id FROM products;
CREATE UNIQUE INDEX ON bench_products (n);
SQL
psql "$DATABASE_URL" -Atc "SELECT id FROM products ORDER BY id" >"$work/ids.txt"
head -n1 "$work/ids.txt" >"$work/hot.txt"
token=$(curl -fs "$base/auth/register" -H 'content-type: application/json' \
  -d "{\"email\":\"bench-$$@example.com\",\"password\":\"Bench!pass1\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

run() { # name connections [wrk args...]
  local name=$1 conns=$2; shift 2
  local out
  out=$(wrk -t2 -c"$conns" -d"${duration}s" --latency -s bench/wrk/report.lua "$@" 2>&1 | grep '^RESULT' || true)
  read -r _ rps p50 p99 errors total <<<"$out"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$conns" "${rps:-?}" "${p50:-?}" "${p99:-?}" "${errors:-?} / ${total:-?}"
}
# wrk takes one script: the request generators load the report hook themselves.
cp bench/wrk/get_product.lua "$work/get_product.lua" && cat bench/wrk/report.lua >>"$work/get_product.lua"
cp bench/wrk/place_order.lua "$work/place_order.lua" && cat bench/wrk/report.lua >>"$work/place_order.lua"

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; PostgreSQL $(psql "$admin_url" -Atc 'show server_version' | cut -d' ' -f1); Redis $(redis-cli -u "$REDIS_URL" info server | awk -F: '/redis_version/ {print $2}' | tr -d '\r'); ${duration}s per run, wrk -t2"
echo
echo "| endpoint | connections | requests/s | p50 ms | p99 ms | errors / requests |"
echo "|---|---|---|---|---|---|"
for conns in 64 256; do
  run "GET /health" "$conns" "$base/health"
  run "GET /products (cached)" "$conns" "$base/products"
  BENCH_IDS="$work/ids.txt" run "GET /products/{id}" "$conns" -s "$work/get_product.lua" "$base"
  BENCH_IDS="$work/ids.txt" BENCH_TOKEN="$token" run "POST /orders (1,000 products)" "$conns" -s "$work/place_order.lua" "$base"
  BENCH_IDS="$work/hot.txt" BENCH_TOKEN="$token" run "POST /orders (one hot product)" "$conns" -s "$work/place_order.lua" "$base"
done
# PostgreSQL's own connection limit caps pgbench's clients (the service pools its own).
max_clients=$(( $(psql "$DATABASE_URL" -Atc 'show max_connections') - DATABASE_MAX_CONNECTIONS - 10 ))
for conns in 32 64; do
  clients=$(( conns < max_clients ? conns : max_clients ))
  tps=$(pgbench "$DATABASE_URL" -n -c "$clients" -j 2 -T "$duration" -D products=1000 -f bench/order.pgbench.sql 2>/dev/null | awk '/^tps/ {print $3}' || true)
  printf '| pgbench: an order'"'"'s SQL transaction | %s | %.0f | | | |\n' "$clients" "${tps:-0}"
done
rss=$(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$server_pid/status")
echo
echo "peak RSS of shop serve: $rss"

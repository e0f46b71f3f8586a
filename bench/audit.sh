#!/usr/bin/env bash
# Stock audit benchmark: how long `GET /admin/stock/audit` takes over a large ledger, on
# PostgreSQL and on SQLite. Seeds BENCH_PRODUCTS products (default 1000), adds
# BENCH_MOVEMENTS movements (default 1000000) that keep every product's ledger equal to its
# stock, then times the audit (BENCH_RUNS times, default 7) from a running `shop serve`.
# Needs PostgreSQL on 127.0.0.1 and the sqlite3 shell. Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shop-target}"
cargo build --release --quiet --workspace --bins

products="${BENCH_PRODUCTS:-1000}"
movements="${BENCH_MOVEMENTS:-1000000}"
runs="${BENCH_RUNS:-7}"
bin="$CARGO_TARGET_DIR/release"
admin_url="${BENCH_DATABASE_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="shop_bench_audit_$$"
dir=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  psql "$admin_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT
export JWT_SECRET="bench-secret-bench-secret-bench-secret" BCRYPT_COST=4 RUST_LOG=error
export HOST=127.0.0.1 PORT="${BENCH_PORT:-3902}" WORKERS=0 RATE_LIMIT_PER_SECOND=0 SEED_PRODUCTS=0

# Pairs of +1/-1 on one product: the ledger grows, every sum stays equal to the stock.
pg_fill="INSERT INTO stock_movements (id, product_id, delta, reason, reference, order_id, actor_kind, actor_id, stock_after, created_at)
  SELECT gen_random_uuid(), p.id, CASE WHEN g % 2 = 0 THEN 1 ELSE -1 END, 'correction', 'bench', NULL, 'system', NULL, p.stock, now()
  FROM generate_series(0, $movements - 1) g
  JOIN (SELECT id, stock, row_number() OVER (ORDER BY id) - 1 AS n FROM products) p ON p.n = (g / 2) % $products;
  ANALYZE;"
sqlite_fill="WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < $movements - 1),
  p AS (SELECT id, stock, row_number() OVER (ORDER BY id) - 1 AS n FROM products)
  INSERT INTO stock_movements (id, product_id, delta, reason, reference, order_id, actor_kind, actor_id, stock_after, created_at)
  SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-7' || substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6))),
    p.id, CASE WHEN g.i % 2 = 0 THEN 1 ELSE -1 END, 'correction', 'bench', NULL, 'system', NULL, p.stock, '2026-01-01T00:00:00+00:00'
  FROM g JOIN p ON p.n = (g.i / 2) % $products;
  ANALYZE;"

# Times the audit of the database at DATABASE_URL: "p50 max checked" in ms.
measure() {
  (exec "$bin/shop" serve) >"$dir/server.log" 2>&1 &
  server=$!
  for _ in $(seq 1 300); do curl -fs "http://$HOST:$PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
  local token
  token=$(curl -s "http://$HOST:$PORT/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@shop.local","password":"Admin123!"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  local times=() body
  for _ in $(seq 1 "$runs"); do
    times+=("$(curl -s -o "$dir/audit.json" -w '%{time_total}' "http://$HOST:$PORT/admin/stock/audit" -H "authorization: Bearer $token")")
  done
  body=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); print(a["products"], a["movements"], len(a["drift"]))' "$dir/audit.json")
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  printf '%s\n' "${times[@]}" | sort -n | python3 -c '
import sys
t = [float(x) * 1000 for x in sys.stdin.read().split()]
print(f"{t[len(t) // 2]:.1f} {t[-1]:.1f}", *sys.argv[1:])' $body
}

echo "machine: $(nproc) cores; PostgreSQL $(psql "$admin_url" -Atc 'show server_version' | cut -d' ' -f1), SQLite $(sqlite3 --version | cut -d' ' -f1)"
echo "| backend | products | movements | audit p50 | audit max | drift |"
echo "|---|---|---|---|---|---|"

psql "$admin_url" -qc "CREATE DATABASE $db"
export DATABASE_URL="${admin_url%/*}/$db"
"$bin/seed" --products "$products" >/dev/null
psql "$DATABASE_URL" -qc "$pg_fill"
read -r p50 max checked total drift < <(measure)
echo "| PostgreSQL | $checked | $total | $p50 ms | $max ms | $drift |"

export DATABASE_URL="sqlite://$dir/shop.db"
"$bin/seed" --products "$products" >/dev/null
sqlite3 "$dir/shop.db" "$sqlite_fill"
read -r p50 max checked total drift < <(measure)
echo "| SQLite | $checked | $total | $p50 ms | $max ms | $drift |"

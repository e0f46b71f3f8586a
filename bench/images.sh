#!/usr/bin/env bash
# Product image benchmark: uploads photo-like JPEGs of a few sizes to a release `shop serve` on the
# embedded default (its image workers in the same process) and measures, per size, the
# upload's answer (the checks and the store, before the 202), the time until the image is
# READY (decoding and three WebP renditions), the renditions' bytes, and the server's peak
# memory. A 20,000 x 20,000 PNG of a few hundred bytes is sent last: it must be refused
# without the peak moving. BENCH_RUNS uploads per size (default 3). Prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shop-target}"
cargo build --release --quiet --bin shop --example photo

runs="${BENCH_RUNS:-3}"
port="${BENCH_PORT:-3903}"
base="http://127.0.0.1:$port"
dir=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

(cd "$dir" && DATABASE_URL="sqlite://$dir/shop.db" HOST=127.0.0.1 PORT="$port" SEED_PRODUCTS=0 \
  BCRYPT_COST=4 RATE_LIMIT_PER_SECOND=0 RUST_LOG=error IMAGE_MAX_BYTES=104857600 \
  exec "$CARGO_TARGET_DIR/release/shop" serve) >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -fs "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done

# Photo-like JPEGs (examples/photo.rs), as a phone would upload them.
for size in 1024x768 3000x2000 4000x3000 6000x4000; do
  "$CARGO_TARGET_DIR/release/examples/photo" "${size%x*}" "${size#*x}" "$dir/$size.jpg"
done

python3 - "$base" "$server" "$dir" "$runs" <<'EOF'
import json, os, struct, sys, time, urllib.request, uuid, zlib

base, pid, workdir, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

def call(method, path, body=None, token=None, content_type="application/json"):
    req = urllib.request.Request(base + path, data=body, method=method)
    if body is not None:
        req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def peak_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

def bomb():
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))

def form(data, name):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"

status, body = call("POST", "/auth/login", json.dumps({"email": "admin@shop.local", "password": "Admin123!"}).encode())
token = json.loads(body)["access_token"]
status, body = call("POST", "/products", json.dumps({"name": "Bench", "price": "1.00", "stock": 1}).encode(), token)
product = json.loads(body)["id"]

def ready(image):
    while True:
        _, body = call("GET", f"/products/{product}", token=token)
        for item in json.loads(body)["images"]:
            if item["id"] == image and item["status"] != "PROCESSING":
                return item
        time.sleep(0.02)

rows = []
for (w, h) in [(1024, 768), (3000, 2000), (4000, 3000), (6000, 4000)]:
    data = open(f"{workdir}/{w}x{h}.jpg", "rb").read()
    uploads, totals, sizes = [], [], 0
    for _ in range(runs):
        body, ctype = form(data, "photo.jpg")
        t0 = time.perf_counter()
        status, answer = call("POST", f"/products/{product}/images", body, token, ctype)
        t1 = time.perf_counter()
        assert status == 202, (status, answer)
        image = json.loads(answer)["id"]
        item = ready(image)
        t2 = time.perf_counter()
        assert item["status"] == "READY", item
        uploads.append((t1 - t0) * 1000)
        totals.append((t2 - t0) * 1000)
        sizes = 0
        for name in ("original", "medium", "thumb"):
            _, content = call("GET", item["urls"][name])
            sizes += len(content)
        call("DELETE", f"/products/{product}/images/{image}", token=token)
    uploads.sort(); totals.sort()
    rows.append((f"{w} x {h} ({w * h / 1e6:.1f} MP)", len(data) / 1e6, uploads[len(uploads) // 2],
                 totals[len(totals) // 2], sizes / 1e3, peak_kib() / 1024))

before = peak_kib()
body, ctype = form(bomb(), "bomb.png")
t0 = time.perf_counter()
status, answer = call("POST", f"/products/{product}/images", body, token, ctype)
t1 = time.perf_counter()
code = json.loads(answer).get("code")
rows.append((f"20000 x 20000 PNG of {len(bomb())} B", len(bomb()) / 1e6, (t1 - t0) * 1000, float("nan"), 0.0, peak_kib() / 1024))

print(f"\nimages: median of {runs} uploads per size (release build, embedded default, 2 image workers)")
print(f"{'upload':<30} {'bytes (MB)':>10} {'202 (ms)':>9} {'READY (ms)':>11} {'renditions (KB)':>16} {'server peak RSS (MiB)':>22}")
for name, mb, up, total, kb, rss in rows:
    ready_ms = "refused" if total != total else f"{total:.0f}"
    print(f"{name:<30} {mb:>10.2f} {up:>9.1f} {ready_ms:>11} {kb:>16.0f} {rss:>22.0f}")
print(f"the bomb: {status} {code}; peak RSS before {before / 1024:.0f} MiB, after {peak_kib() / 1024:.0f} MiB")
EOF

#!/usr/bin/env bash
# HTTP load on a release server: wrk against POST /v1/keys/verify (a cached, valid key),
# GET /v1/auth (forward auth, the same key in X-API-Key) and GET /healthz in the same
# run, printing req/s, p50/p99 and the ratios.
#
#   bench/http.sh [connections=32] [seconds=10] [threads=2]
#
# Needs wrk (Debian package `wrk`). Builds the release binary if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS="${1:-32}"
SECS="${2:-10}"
THREADS="${3:-2}"
command -v wrk > /dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -x target/release/keyhaven ] || cargo build --release -p keyhaven
BIN=target/release/keyhaven

DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KEYHAVEN_DATA_DIR="$DATA" KEYHAVEN_LISTEN="127.0.0.1:$PORT" KEYHAVEN_LOG=warn
export KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD="bench-admin-password"
"$BIN" serve > "$DATA/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 50); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1 && break
    sleep 0.2
done
KEY=$("$BIN" admin create-key --name bench --role read-only --scope read)
cat > "$DATA/verify.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"key":"$KEY","permissions":["read"]}'
wrk.headers["Content-Type"] = "application/json"
LUA
cat > "$DATA/report.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %.3f %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
LUA
cat "$DATA/report.lua" >> "$DATA/verify.lua"
cat > "$DATA/auth.lua" <<LUA
wrk.headers["X-API-Key"] = "$KEY"
LUA
cat "$DATA/report.lua" >> "$DATA/auth.lua"
# Sanity check and cache warm-up.
curl -fsS -H 'Content-Type: application/json' -d "{\"key\":\"$KEY\",\"permissions\":[\"read\"]}" \
    "http://127.0.0.1:$PORT/v1/keys/verify" | grep -q '"code":"VALID"'

run() { # name, extra args…
    local out
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${SECS}s" --latency "$@" | grep '^RESULT')
    echo "$out"
}
echo "wrk: $THREADS threads, $CONNS connections, ${SECS}s per endpoint, on $(nproc) cores shared with the server"
H=$(run -s "$DATA/report.lua" "http://127.0.0.1:$PORT/healthz")
V=$(run -s "$DATA/verify.lua" "http://127.0.0.1:$PORT/v1/keys/verify")
A=$(run -s "$DATA/auth.lua" "http://127.0.0.1:$PORT/v1/auth?permissions=read")
H2=$(run -s "$DATA/report.lua" "http://127.0.0.1:$PORT/healthz")
python3 - "$H" "$V" "$A" "$H2" <<'PY'
import sys
def parse(s):
    _, rps, p50, p99, errs = s.split()
    return float(rps), float(p50), float(p99), int(errs)
h1, v, a, h2 = (parse(x) for x in sys.argv[1:5])
h = (h1[0] + h2[0]) / 2
print(f"{'endpoint':<22}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
print(f"{'GET /healthz (before)':<22}{h1[0]:>10.0f}{h1[1]:>10.3f}{h1[2]:>10.3f}{h1[3]:>9}")
print(f"{'POST /v1/keys/verify':<22}{v[0]:>10.0f}{v[1]:>10.3f}{v[2]:>10.3f}{v[3]:>9}")
print(f"{'GET /v1/auth':<22}{a[0]:>10.0f}{a[1]:>10.3f}{a[2]:>10.3f}{a[3]:>9}")
print(f"{'GET /healthz (after)':<22}{h2[0]:>10.0f}{h2[1]:>10.3f}{h2[2]:>10.3f}{h2[3]:>9}")
print(f"ratio verify / healthz: {v[0] / h:.3f}")
print(f"ratio auth / healthz:   {a[0] / h:.3f}")
PY

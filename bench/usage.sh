#!/usr/bin/env bash
# Usage control under HTTP load (USAGE-CONTROL.md, "Measured, not asserted"): in one
# run, wrk against POST /v1/keys/verify with a plain key and with a key that has a
# default limit of 10^9 per minute and 10^9 credits, and against POST /v1/ratelimit;
# prints req/s, p50/p99, the ratios and the server's CPU time per request (from
# /proc/<pid>/stat, utime + stime).
#
#   bench/usage.sh sqlite|postgres|redis [connections=32] [seconds=10] [threads=2]
#
# `postgres` and `redis` need PostgreSQL at $KEYHAVEN_BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432) and run two nodes on one fresh database, wrk
# spreading the connections over both; `redis` adds KEYHAVEN_REDIS_URL
# ($KEYHAVEN_BENCH_REDIS, default redis://127.0.0.1:6379/15). Needs wrk, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-sqlite}"
CONNS="${2:-32}"
SECS="${3:-10}"
THREADS="${4:-2}"
command -v wrk > /dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
source bench/lib.sh
PLAIN=$(mkkey '{"name":"plain"}')
LIMITED=$(mkkey '{"name":"limited","ratelimit":{"limit":1000000000,"duration_ms":60000},"credits":{"remaining":1000000000}}')
script plain POST "{\"key\":\"$PLAIN\"}" ""
script limited POST "{\"key\":\"$LIMITED\"}" ""
script ratelimit POST '{"namespace":"bench","identifier":"user-1","limit":1000000000,"duration_ms":60000}' \
    "wrk.headers[\"Authorization\"] = \"Bearer $ADMIN\""
# Sanity checks and warm-up.
for n in $(seq 0 $((NODES - 1))); do
    b="http://127.0.0.1:${PORTS[$n]}"
    curl -fsS -H 'Content-Type: application/json' -d "{\"key\":\"$PLAIN\"}" "$b/v1/keys/verify" | grep -q '"code":"VALID"'
    curl -fsS -H 'Content-Type: application/json' -d "{\"key\":\"$LIMITED\"}" "$b/v1/keys/verify" | grep -q '"code":"VALID"'
    curl -fsS -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
        -d '{"namespace":"bench","identifier":"user-1","limit":1000000000,"duration_ms":60000}' \
        "$b/v1/ratelimit" | grep -q '"success":true'
done
echo "mode: $MODE, $NODES node(s); wrk: $THREADS threads × node, $CONNS connections in all, ${SECS}s per endpoint, $(nproc) cores shared with the servers"
P=$(run plain /v1/keys/verify)
L=$(run limited /v1/keys/verify)
R=$(run ratelimit /v1/ratelimit)
P2=$(run plain /v1/keys/verify)
HZ=$(getconf CLK_TCK)
python3 - "$P" "$L" "$R" "$P2" "$HZ" <<'PY'
import sys
def parse(s):
    _, rps, p50, p99, errs, reqs, ticks, xacts = s.split()
    return float(rps), float(p50), float(p99), int(errs), int(reqs), int(ticks), int(xacts)
p1, l, r, p2 = (parse(x) for x in sys.argv[1:5])
hz = int(sys.argv[5])
plain = (p1[0] + p2[0]) / 2
def us_per_req(x):
    return x[5] / hz * 1e6 / max(x[4], 1)
print(f"{'endpoint':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'CPU µs/req':>12}{'db tx/1k req':>14}")
for name, x in [("verify, plain key (before)", p1), ("verify, limit + credits", l),
                ("POST /v1/ratelimit", r), ("verify, plain key (after)", p2)]:
    print(f"{name:<34}{x[0]:>10.0f}{x[1]:>9.3f}{x[2]:>9.3f}{x[3]:>9}{us_per_req(x):>12.1f}{x[6] * 1000 / max(x[4], 1):>14.2f}")
print(f"ratio limited / plain:   {l[0] / plain:.3f}")
print(f"ratio ratelimit / plain: {r[0] / plain:.3f}")
PY

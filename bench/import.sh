#!/usr/bin/env bash
# Imported keys under HTTP load (IMPORT.md): in one run, wrk against POST /v1/keys/verify
# with a native key and with a key imported from another system (its plain string, not
# in Keyhaven's format), both cached; then the first verification of keys imported with
# Django's PBKDF2 (870,000 iterations, Django 5's default) and bcrypt (cost 12) — the one
# slow-hash check before each is stored by its SHA-256 digest — and their second one.
#
#   bench/import.sh sqlite|postgres [connections=32] [seconds=10] [threads=2]
#
# Needs wrk, curl, python3 (with no extra packages); `postgres` runs two nodes on a fresh
# database at $KEYHAVEN_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-sqlite}"
CONNS="${2:-32}"
SECS="${3:-10}"
THREADS="${4:-2}"
command -v wrk > /dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
source bench/lib.sh
NATIVE=$(mkkey '{"name":"native"}')
IMPORTED="sk_live_51BenchImportedKeyFromAnotherSystem0001"
PBKDF2_KEY="Bn01Bn01.BenchmarkedDjangoPbkdf2ImportedKey"
BCRYPT_KEY="Bc01Bc01.BenchmarkedBcryptImportedKeyValue"
# Hashes made the way those systems make them (Python's hashlib for PBKDF2; bcrypt by
# the test-only helper below when the bcrypt module is missing: a Rust-free fallback is
# not worth it, so the bcrypt line is skipped then).
PBKDF2_HASH=$(python3 -c '
import hashlib, base64, sys
key, salt, n = sys.argv[1].encode(), "BenchSaltBench01", 870000
h = hashlib.pbkdf2_hmac("sha256", key, salt.encode(), n)
print(f"pbkdf2_sha256${n}${salt}${base64.b64encode(h).decode()}")' "$PBKDF2_KEY")
BCRYPT_HASH=$(python3 -c '
import sys
try:
    import bcrypt
except ImportError:
    sys.exit(0)
print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(12)).decode())' "$BCRYPT_KEY")
ITEMS="{\"name\":\"imported\",\"key\":\"$IMPORTED\"},{\"name\":\"pbkdf2\",\"hash\":{\"algorithm\":\"pbkdf2_sha256\",\"value\":\"$PBKDF2_HASH\",\"lookup\":{\"prefix\":\"Bn01Bn01\"}}}"
if [ -n "$BCRYPT_HASH" ]; then
    ITEMS="$ITEMS,{\"name\":\"bcrypt\",\"hash\":{\"algorithm\":\"bcrypt\",\"value\":\"$BCRYPT_HASH\",\"lookup\":{\"prefix\":\"Bc01Bc01\"}}}"
fi
curl -fsS -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d "{\"keys\":[$ITEMS]}" "$BASE/v1/organizations/$ORG/api-keys/import" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); assert not r["errors"], r; print(len(r["imported"]), "keys imported")'
first() { # key → milliseconds of its verification, checking it is VALID
    curl -fsS -o "$DATA/first.json" -w '%{time_total}' -H 'Content-Type: application/json' \
        -d "{\"key\":\"$1\"}" "$BASE/v1/keys/verify" | python3 -c 'import sys; print(f"{float(sys.stdin.read())*1000:.1f}")'
    grep -q '"code":"VALID"' "$DATA/first.json"
}
echo "mode: $MODE, $NODES node(s); wrk: $THREADS threads × node, $CONNS connections in all, ${SECS}s per endpoint, $(nproc) cores shared with the servers"
echo "PBKDF2 (870,000 iterations) first verification: $(first "$PBKDF2_KEY") ms; second: $(first "$PBKDF2_KEY") ms"
if [ -n "$BCRYPT_HASH" ]; then
    echo "bcrypt (cost 12) first verification: $(first "$BCRYPT_KEY") ms; second: $(first "$BCRYPT_KEY") ms"
else
    echo "bcrypt: skipped (pip install bcrypt to make the hash)"
fi
script native POST "{\"key\":\"$NATIVE\"}" ""
script imported POST "{\"key\":\"$IMPORTED\"}" ""
for n in $(seq 0 $((NODES - 1))); do
    b="http://127.0.0.1:${PORTS[$n]}"
    for k in "$NATIVE" "$IMPORTED"; do
        curl -fsS -H 'Content-Type: application/json' -d "{\"key\":\"$k\"}" "$b/v1/keys/verify" | grep -q '"code":"VALID"'
    done
done
N1=$(run native /v1/keys/verify)
I1=$(run imported /v1/keys/verify)
N2=$(run native /v1/keys/verify)
I2=$(run imported /v1/keys/verify)
HZ=$(getconf CLK_TCK)
python3 - "$N1" "$I1" "$N2" "$I2" "$HZ" <<'PY'
import sys
def parse(s):
    _, rps, p50, p99, errs, reqs, ticks, xacts = s.split()
    return float(rps), float(p50), float(p99), int(errs), int(reqs), int(ticks), int(xacts)
n1, i1, n2, i2 = (parse(x) for x in sys.argv[1:5])
hz = int(sys.argv[5])
def us(x):
    return x[5] / hz * 1e6 / max(x[4], 1)
print(f"{'endpoint':<34}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{'CPU µs/req':>12}{'db tx/1k req':>14}")
for name, x in [("verify, native key", n1), ("verify, imported key", i1),
                ("verify, native key (again)", n2), ("verify, imported key (again)", i2)]:
    print(f"{name:<34}{x[0]:>10.0f}{x[1]:>9.3f}{x[2]:>9.3f}{x[3]:>9}{us(x):>12.1f}{x[6] * 1000 / max(x[4], 1):>14.2f}")
print(f"ratio imported / native: {(i1[0] + i2[0]) / (n1[0] + n2[0]):.3f}")
PY

# Shared by the HTTP load scripts (source it after setting MODE, CONNS, SECS, THREADS):
# builds the release binary if missing, starts one node on SQLite or two on a fresh
# PostgreSQL database (plus KEYHAVEN_REDIS_URL in `redis` mode), makes a super-admin key
# ($ADMIN) of the organization $ORG, and defines
#   mkkey BODY          create a key through the API, print its secret
#   script NAME METHOD BODY [EXTRA_LUA]   a wrk script reporting one RESULT line
#   run NAME PATH       wrk against every node → "RESULT rps p50 p99 errs reqs ticks xacts"
# Everything is stopped and removed on exit.
[ -x target/release/keyhaven ] || cargo build --release -p keyhaven
BIN=$PWD/target/release/keyhaven
DATA=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export KEYHAVEN_DATA_DIR="$DATA" KEYHAVEN_LOG=warn
export KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD="bench-admin-password"
export KEYHAVEN_MASTER_KEY=$(head -c 32 /dev/urandom | base64)
NODES=1
PGDB=""
case "$MODE" in
    sqlite) ;;
    postgres|redis)
        NODES=2
        PG="${KEYHAVEN_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
        PGDB="kh_bench_$$"
        psql "$PG/postgres" -qc "CREATE DATABASE $PGDB" > /dev/null
        export KEYHAVEN_DATABASE_URL="$PG/$PGDB"
        if [ "$MODE" = redis ]; then
            export KEYHAVEN_REDIS_URL="${KEYHAVEN_BENCH_REDIS:-redis://127.0.0.1:6379/15}"
        fi
        ;;
    *) echo "mode: sqlite, postgres or redis" >&2; exit 2 ;;
esac
PIDS=()
PORTS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ -n "$PGDB" ] && psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $PGDB" > /dev/null 2>&1
    rm -rf "$DATA"
}
trap cleanup EXIT
for n in $(seq 1 "$NODES"); do
    port=$(free_port)
    KEYHAVEN_LISTEN="127.0.0.1:$port" "$BIN" serve > "$DATA/server-$n.log" 2>&1 &
    PIDS+=($!)
    PORTS+=("$port")
    for _ in $(seq 1 100); do
        curl -fsS "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && break
        sleep 0.2
    done
done
BASE="http://127.0.0.1:${PORTS[0]}"
ADMIN=$("$BIN" admin create-key --name bench-admin --role super-admin)
ORG=$(curl -fsS -H "Authorization: Bearer $ADMIN" "$BASE/v1/me" | python3 -c 'import json,sys; print(json.load(sys.stdin)["organization_id"])')
mkkey() { # body → secret
    curl -fsS -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "$1" \
        "$BASE/v1/organizations/$ORG/api-keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
cat > "$DATA/report.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("RESULT %.0f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.requests))
end
LUA
script() { # name, method, body, extra header line
    { echo "wrk.method = \"$2\""; echo "wrk.body = '$3'";
      echo 'wrk.headers["Content-Type"] = "application/json"'; echo "$4";
      cat "$DATA/report.lua"; } > "$DATA/$1.lua"
}
cpu() { # total utime+stime ticks of every node
    local t=0
    for p in "${PIDS[@]}"; do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}
xacts() { # committed transactions of the bench database so far (0 on SQLite)
    if [ -n "$PGDB" ]; then
        psql "$PG/postgres" -tAc "SELECT xact_commit FROM pg_stat_database WHERE datname = '$PGDB'"
    else
        echo 0
    fi
}
run() { # name path → "RESULT rps p50 p99 errs requests cputicks xacts"
    local before after outs=() x0 x1
    x0=$(xacts)
    before=$(cpu)
    local per=$((CONNS / NODES)) tmp
    for n in $(seq 0 $((NODES - 1))); do
        tmp="$DATA/out-$1-$n"
        wrk -t"$THREADS" -c"$per" -d"${SECS}s" --latency -s "$DATA/$1.lua" \
            "http://127.0.0.1:${PORTS[$n]}$2" > "$tmp" &
        outs+=("$!")
    done
    for o in "${outs[@]}"; do wait "$o"; done
    after=$(cpu)
    sleep 0.5 # the statistics collector reports with a delay
    x1=$(xacts)
    python3 - "$DATA" "$1" "$NODES" "$((after - before))" "$((x1 - x0))" <<'PY'
import sys, glob
data, name, nodes, ticks, xacts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rps = reqs = errs = 0; p50 = p99 = 0.0
for n in range(nodes):
    line = [l for l in open(f"{data}/out-{name}-{n}") if l.startswith("RESULT")][0].split()
    rps += float(line[1]); p50 = max(p50, float(line[2])); p99 = max(p99, float(line[3]))
    errs += int(line[4]); reqs += int(line[5])
print(f"RESULT {rps:.0f} {p50:.3f} {p99:.3f} {errs} {reqs} {ticks} {xacts}")
PY
}

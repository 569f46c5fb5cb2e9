#!/usr/bin/env bash
# Fuzzes the management API from its own OpenAPI document with schemathesis:
# starts a fresh server (SQLite in a temporary data dir), creates a super-admin key with
# the CLI, and runs every operation with that key. Fails on any server error or any
# response that violates the document.
#
#   scripts/schemathesis.sh [path/to/keyhaven]   (default: target/debug/keyhaven)
#
# Needs Python 3; installs schemathesis into target/schemathesis-venv on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/keyhaven}"
VENV=target/schemathesis-venv
ST_VERSION=4.32.5
if [ ! -x "$VENV/bin/schemathesis" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$ST_VERSION"
fi

DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KEYHAVEN_DATA_DIR="$DATA" KEYHAVEN_LISTEN="127.0.0.1:$PORT"
export KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD="schemathesis-admin-password"
"$BIN" serve > "$DATA/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 1 50); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" > /dev/null 2>&1 && break
    sleep 0.2
done
BOOT=$("$BIN" admin create-key --name schemathesis-bootstrap --role super-admin)
API="http://127.0.0.1:$PORT"
export ORG=$(curl -fsS -H "Authorization: Bearer $BOOT" "$API/v1/me" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["organization_id"])')
# The fuzzing key belongs to a service account, so that fuzzed changes to users can't
# take it away; the passes below keep the operations that could disable it for last.
SA=$(curl -fsS -H "Authorization: Bearer $BOOT" -H 'Content-Type: application/json' \
    -d '{"name":"schemathesis","roles":["super-admin"]}' "$API/v1/organizations/$ORG/service-accounts" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
export KEY=$(curl -fsS -H "Authorization: Bearer $BOOT" -H 'Content-Type: application/json' \
    -d "{\"name\":\"schemathesis\",\"roles\":[\"super-admin\"],\"owner\":{\"type\":\"service_account\",\"id\":\"$SA\"}}" \
    "$API/v1/organizations/$ORG/api-keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

cat > "$DATA/schemathesis.toml" <<TOML
[parameters]
"path.org" = "\${ORG}"
TOML

run_st() {
    "$VENV/bin/schemathesis" --config-file "$DATA/schemathesis.toml" run \
        "$API/v1/openapi.json" \
        --header "Authorization: Bearer $KEY" \
        --checks "${ST_CHECKS:-not_a_server_error,response_schema_conformance,content_type_conformance}" \
        --max-examples "${ST_MAX_EXAMPLES:-30}" \
        --seed "${ST_SEED:-1}" \
        --exclude-path /v1/session \
        --no-color "$@"
}
DESTRUCTIVE='(/suspend|/archive|/revoke|/regenerate|/batch-delete)$'
echo "== pass 1: everything but deletions and state changes"
run_st --exclude-method DELETE --exclude-path-regex "$DESTRUCTIVE"
echo "== pass 2: deletions and state changes"
run_st --include-path-regex "$DESTRUCTIVE"
run_st --include-method DELETE

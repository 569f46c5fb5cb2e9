#!/usr/bin/env bash
# Fuzzes the management API from its own OpenAPI document with schemathesis:
# starts a fresh server (SQLite in a temporary data dir), creates a super-admin key with
# the CLI, and runs every operation with that key and all of schemathesis' checks: no
# server error, every response as documented, every schema-valid request accepted and
# every schema-violating one refused (the exceptions, and why, are in the config below).
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
# The fuzzed webhooks point at a local port (nothing listens there).
export KEYHAVEN_OUTBOUND_ALLOWED_CIDRS=127.0.0.0/8
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
export SA=$(curl -fsS -H "Authorization: Bearer $BOOT" -H 'Content-Type: application/json' \
    -d '{"name":"schemathesis","roles":["super-admin"]}' "$API/v1/organizations/$ORG/service-accounts" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
export KEY=$(curl -fsS -H "Authorization: Bearer $BOOT" -H 'Content-Type: application/json' \
    -d "{\"name\":\"schemathesis\",\"roles\":[\"super-admin\"],\"owner\":{\"type\":\"service_account\",\"id\":\"$SA\"}}" \
    "$API/v1/organizations/$ORG/api-keys" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

# Values the document cannot say are valid: a cursor must be one the API returned (the
# base64url of an id, here of the organization's), and analytics accept at most 90 days.
export CURSOR=$(python3 -c 'import base64,os; print(base64.urlsafe_b64encode(os.environ["ORG"].encode()).decode().rstrip("="))')
export SINCE=$(date -u -d '-1 day' +%Y-%m-%dT%H:%M:%SZ) UNTIL=$(date -u +%Y-%m-%dT%H:%M:%SZ)

cat > "$DATA/schemathesis.toml" <<TOML
[parameters]
"path.org" = "\${ORG}"
"query.cursor" = "\${CURSOR}"
"query.since" = "\${SINCE}"
"query.until" = "\${UNTIL}"

# What JSON Schema cannot express, so a schema-valid request may still be refused:
# a permission expression's grammar and byte-counted tags and namespaces (verification and
# rate limits); an audit sink's fields depend on its kind; a role's key_name_pattern must
# compile as a Rust regular expression; an analytics cursor encodes a row.
[[operations]]
include-path-regex = "^/v1/(auth|keys/verify|ratelimit)\$|/audit-sinks|/roles|/analytics/"
checks.positive_data_acceptance.enabled = false

# Import reports a malformed item in its answer (IMPORT.md), with 200.
[[operations]]
include-path-regex = "/api-keys/import\$"
checks.negative_data_rejection.enabled = false
TOML

# The document as served, narrowed for fuzzing where a valid value depends on state the
# generator can't see: role names to the roles that exist, webhook URLs to a receiver
# the outbound policy allows, expiry instants to the future.
curl -fsS "$API/v1/openapi.json" > "$DATA/served.json"
python3 - "$DATA/served.json" "$DATA/openapi.json" <<'PY'
import json, os, sys
doc = json.load(open(sys.argv[1]))
ROLES = ["super-admin", "admin", "read-only"]
BODIES = {"CreateApiKey", "UpdateApiKey", "CreateServiceAccount", "UpdateServiceAccount",
          "CreateUser", "UpdateUser", "CreateWebhook", "UpdateWebhook", "RegenerateApiKey",
          "CreateCredential", "UpdateCredential"}
for name, sch in doc["components"]["schemas"].items():
    props = sch.get("properties") if name in BODIES else None
    for field, p in (props or {}).items():
        nullable = "null" in p.get("type", [])
        if field == "roles" and p.get("items"):
            p["items"] = {"type": "string", "enum": ROLES}
        elif field == "url":
            p.clear(); p["enum"] = ["http://127.0.0.1:9/keyhaven-fuzz"] + ([None] if nullable else [])
        elif field == "ratelimits":
            p["maxItems"] = 1  # their names must differ
        elif field == "expires_at":
            p.clear(); p["enum"] = ["2099-01-01T00:00:00Z", None]
        elif field == "owner":
            p.clear(); p["enum"] = [{"type": "service_account", "id": os.environ["SA"]}, None]
    # Fields that conflict with another one given differently (credits.remaining,
    # expires_at) are left out.
    for field in ("remaining", "expires_in_days"):
        (props or {}).pop(field, None)
# A refill's day_of_month applies to monthly refills only.
doc["components"]["schemas"].get("CreditRefill", {}).get("properties", {}).pop("day_of_month", None)
json.dump(doc, open(sys.argv[2], "w"))
PY

run_st() {
    "$VENV/bin/schemathesis" --config-file "$DATA/schemathesis.toml" run \
        "$DATA/openapi.json" --url "$API" \
        --header "Authorization: Bearer $KEY" \
        ${ST_CHECKS:+--checks "$ST_CHECKS"} \
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

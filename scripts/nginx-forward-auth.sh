#!/usr/bin/env bash
# A real nginx (Debian's) in front of a tiny upstream, asking Keyhaven through
# auth_request with docs/nginx-forward-auth.conf: a valid key reaches the upstream with
# the X-Keyhaven-* headers, an invalid or missing one (or another organization's) gets 401, a key lacking a required
# permission 403, and a rate-limited or used-up key 429 with Retry-After (not the 500
# auth_request makes of any other status).
#
#   scripts/nginx-forward-auth.sh [path/to/keyhaven]   (default: target/debug/keyhaven)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-target/debug/keyhaven}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is not installed (apt-get install nginx-light)" >&2; exit 1; }

DIR=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KH_PORT=$(free_port); API_PORT=$(free_port); NGX_PORT=$(free_port)
PIDS=()
cleanup() {
    [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

KEYHAVEN_DATA_DIR="$DIR/data" KEYHAVEN_LISTEN="127.0.0.1:$KH_PORT" KEYHAVEN_TRUSTED_PROXIES=127.0.0.1/32 \
    KEYHAVEN_BOOTSTRAP_ADMIN_PASSWORD=nginx-test-password "$BIN" serve > "$DIR/keyhaven.log" 2>&1 &
PIDS+=($!)

# The upstream answers with the X-Keyhaven-* headers it received, as JSON.
cat > "$DIR/upstream.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-keyhaven") or k.lower() in ("authorization", "x-api-key")}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$DIR/upstream.py" "$API_PORT" &
PIDS+=($!)


for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$KH_PORT/healthz" > /dev/null 2>&1 \
        && curl -fsS "http://127.0.0.1:$API_PORT/" > /dev/null 2>&1 && break
    sleep 0.2
done
KEY=$(KEYHAVEN_DATA_DIR="$DIR/data" "$BIN" admin create-key --name nginx --role read-only --scope read)
ORG=$(curl -fsS -H 'Content-Type: application/json' -d "{\"key\": \"$KEY\"}" \
    "http://127.0.0.1:$KH_PORT/v1/keys/verify" | python3 -c 'import json, sys; print(json.load(sys.stdin)["organization_id"])')

# The documented config, with this run's ports, wrapped in a minimal nginx.conf.
sed -e "s/127.0.0.1:8080/127.0.0.1:$KH_PORT/" -e "s/127.0.0.1:9000/127.0.0.1:$API_PORT/" \
    -e "s/listen 8000;/listen 127.0.0.1:$NGX_PORT;/" -e "s/YOUR_ORGANIZATION_ID/$ORG/" \
    docs/nginx-forward-auth.conf > "$DIR/site.conf"
cat >> "$DIR/site.conf" <<CONF
server {
    listen 127.0.0.1:$((NGX_PORT)) ;
    server_name needs-write;
    location / {
        auth_request /_keyhaven_write;
        proxy_pass http://api;
    }
    location = /_keyhaven_write {
        internal;
        proxy_pass http://keyhaven/v1/auth?permissions=write&organization_id=$ORG;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
    }
}
CONF
cat > "$DIR/nginx.conf" <<CONF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/nginx-error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $DIR/tmp; proxy_temp_path $DIR/tmp; fastcgi_temp_path $DIR/tmp;
    uwsgi_temp_path $DIR/tmp; scgi_temp_path $DIR/tmp;
    include $DIR/site.conf;
}
CONF
mkdir -p "$DIR/tmp"
"$NGINX" -t -c "$DIR/nginx.conf" -p "$DIR" 2> "$DIR/nginx-test.log" || { cat "$DIR/nginx-test.log"; exit 1; }
"$NGINX" -c "$DIR/nginx.conf" -p "$DIR"
for _ in $(seq 1 50); do
    curl -s -o /dev/null "http://127.0.0.1:$NGX_PORT/" && break
    sleep 0.1
done
URL="http://127.0.0.1:$NGX_PORT/orders"
fail() { echo "FAIL: $*" >&2; cat "$DIR/nginx-error.log" >&2 || true; exit 1; }

status=$(curl -s -o "$DIR/body" -w '%{http_code}' -H "Authorization: Bearer $KEY" "$URL")
[ "$status" = 200 ] || fail "valid key (Bearer) got $status"
python3 - "$DIR/body" <<'PY' || fail "upstream did not get the identity headers: $(cat "$DIR/body")"
import json, sys
h = json.load(open(sys.argv[1]))
assert len(h["x-keyhaven-key-id"]) == 26, h
assert len(h["x-keyhaven-organization-id"]) == 26, h
assert len(h["x-keyhaven-owner-id"]) == 26, h
assert "read" in h["x-keyhaven-permissions"].split(","), h
assert "authorization" not in h and "x-api-key" not in h, h
PY
status=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $KEY" "$URL")
[ "$status" = 200 ] || fail "valid key (X-API-Key) got $status"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer kh_invalid" "$URL")
[ "$status" = 401 ] || fail "invalid key got $status"
BAD=$(python3 -c "import sys; k=sys.argv[1]; print(k[:-1] + ('A' if k[-1] != 'A' else 'B'))" "$KEY")
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $BAD" "$URL")
[ "$status" = 401 ] || fail "mistyped key got $status"
status=$(curl -s -o /dev/null -w '%{http_code}' "$URL")
[ "$status" = 401 ] || fail "missing key got $status"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: needs-write" -H "Authorization: Bearer $KEY" "http://127.0.0.1:$NGX_PORT/orders")
[ "$status" = 403 ] || fail "key without the required permission got $status"
# The configuration pins the organization: a valid key of another organization is refused.
OTHER_ORG=$(echo "other-org-password-1" | KEYHAVEN_DATA_DIR="$DIR/data" "$BIN" admin create-org \
    --name Other --admin-email owner@other.example --password-stdin)
OTHER=$(KEYHAVEN_DATA_DIR="$DIR/data" "$BIN" admin create-key --org "$OTHER_ORG" --name other --scope read)
status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OTHER" "$URL")
[ "$status" = 401 ] || fail "a key of another organization got $status"

# Keys with a rate limit of one request an hour, and with one use left, made through the
# management API with an admin key.
ADMIN=$(KEYHAVEN_DATA_DIR="$DIR/data" "$BIN" admin create-key --org "$ORG" --name nginx-admin --role super-admin)
limited_key() {
    curl -fsS -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d "$1" \
        "http://127.0.0.1:$KH_PORT/v1/organizations/$ORG/api-keys" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])'
}
check_429() { # name, key, expected code
    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$URL")
    [ "$status" = 200 ] || fail "$1: first request got $status"
    status=$(curl -s -D "$DIR/headers" -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $2" "$URL")
    [ "$status" = 429 ] || fail "$1: second request got $status (expected 429)"
    python3 - "$DIR/headers" "$3" <<'PY' || fail "$1: 429 without a usable Retry-After / code: $(cat "$DIR/headers")"
import sys
h = {}
for line in open(sys.argv[1]).read().splitlines()[1:]:
    if ":" in line:
        k, v = line.split(":", 1)
        h[k.strip().lower()] = v.strip()
assert int(h["retry-after"]) >= 1, h
assert h["x-keyhaven-code"] == sys.argv[2], h
PY
}
check_429 "rate-limited key" \
    "$(limited_key '{"name": "nginx-limited", "roles": ["read-only"], "ratelimit": {"limit": 1, "duration_ms": 3600000}}')" \
    RATE_LIMITED
check_429 "used-up key" \
    "$(limited_key '{"name": "nginx-once", "roles": ["read-only"], "remaining": 1}')" \
    USAGE_EXCEEDED
echo "nginx forward auth: ok (valid 200 with X-Keyhaven-* headers, invalid/missing/other organization's 401, lacking permission 403, rate-limited/used-up 429 with Retry-After)"

#!/usr/bin/env bash
# Run the Postman collection with Newman against a live, throwaway server.
#
# Starts `ticketing serve` on a free port with a fresh SQLite database (migrated, demo data
# loaded, fault injection on for the atomicity drills), runs
# postman/ticketing.postman_collection.json against it, then stops the server.
# Exits non-zero when anything fails, including when Newman or the CLI is missing.
#
# Environment: VENV (default .venv) is where `ticketing` is installed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
TICKETING="$VENV/bin/ticketing"
NEWMAN="node_modules/.bin/newman"
COLLECTION="postman/ticketing.postman_collection.json"
ENVIRONMENT="postman/local.postman_environment.json"

if [[ ! -x "$NEWMAN" ]]; then
    echo "newman.sh: $NEWMAN not found; run 'npm ci' (or 'npm install') first" >&2
    exit 1
fi
if [[ ! -x "$TICKETING" ]]; then
    echo "newman.sh: $TICKETING not found; run 'make install' first (or set VENV)" >&2
    exit 1
fi

PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
BASE_URL="http://127.0.0.1:$PORT"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/ticketing-newman.XXXXXX")"
server_pid=""
status=1

cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ "$status" -ne 0 && -f "$tmp/server.log" ]]; then
        echo "---- server log (last 100 lines): $tmp/server.log ----" >&2
        tail -n 100 "$tmp/server.log" >&2 || true
        echo "---- end of server log ----" >&2
    else
        rm -rf "$tmp"
    fi
}
trap 'status=$?; cleanup; exit $status' EXIT

export TICKETING_DATABASE_URL="sqlite:///$tmp/newman.db"
export TICKETING_ADMIN_TOKEN="newman-admin-token"
export TICKETING_FAULT_INJECTION=1
export TICKETING_LOG_FORMAT=console
# Keep the armed-fault state of this throwaway server out of the checkout's var/.
export TICKETING_FAULT_STATE_PATH="$tmp/faults.json"

echo "newman.sh: database $TICKETING_DATABASE_URL"
"$TICKETING" db upgrade
"$TICKETING" demo

echo "newman.sh: starting server on $BASE_URL"
"$TICKETING" serve --host 127.0.0.1 --port "$PORT" --workers 2 >"$tmp/server.log" 2>&1 &
server_pid=$!

ready=""
for _ in $(seq 1 60); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "newman.sh: the server exited before it became healthy" >&2
        exit 1
    fi
    code="$(python3 - "$BASE_URL/healthz" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.status)
except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
    print(getattr(exc, "code", 0))
PY
)"
    if [[ "$code" == "200" ]]; then
        ready=1
        break
    fi
    sleep 0.5
done
if [[ -z "$ready" ]]; then
    echo "newman.sh: GET /healthz did not answer 200 within 30 s" >&2
    exit 1
fi

"$NEWMAN" run "$COLLECTION" \
    -e "$ENVIRONMENT" \
    --env-var "baseUrl=$BASE_URL" \
    --env-var "adminToken=newman-admin-token" \
    --reporters cli \
    --bail

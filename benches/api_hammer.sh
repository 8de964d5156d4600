#!/usr/bin/env bash
# Proof for docs/performance.md (issue 13): CALLS recorded calls lose
# nothing while the HTTP API is hammered with authenticated searches (each
# one checked against a token and written to the audit trail).
#   bash benches/api_hammer.sh [CALLS=2000] [CPS=100] [TALK_S=60] [CLIENTS=8]
# Starts `srs serve` (release) on loopback with one viewer token, runs
# `api_load hammer` (CLIENTS keep-alive clients searching without pause:
# GET /api/v1/recordings with limit, status, offset, since and participant
# filters) for the whole run, and meanwhile the load generator, which
# verifies every recording from the drop (status complete, every packet of
# every stream, file durations) and exits 1 on any loss. Then checks that
# every call is in the index and that the audit chain verifies. Prints the
# load generator's JSON, the hammer's JSON, and one summary line; exits 1
# if anything was lost.
# Optional: SRS_CONFIG=file, LOADGEN_ARGS="...", as for load_run.sh;
# PROFILE=debug (a quick check of the script itself, not a measurement).
set -uo pipefail
calls=${1:-2000} cps=${2:-100} talk=${3:-60} clients=${4:-8}
cd "$(dirname "$0")/.."
profile=${PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release -q --bin srs --example loadgen --example api_load || exit 1
else
  cargo build -q --bin srs --example loadgen --example api_load || exit 1
fi
rec=$(mktemp -d)
bin=${CARGO_TARGET_DIR:-./target}/$profile
token=$($bin/srs token add hammer --role viewer --recordings "$rec") || exit 1
$bin/srs serve ${SRS_CONFIG:+--config "$SRS_CONFIG"} --sip 127.0.0.1:47060 --http 127.0.0.1:47080 \
  --recordings "$rec" --rtp-ports 50000-59999 >"$rec/srs.log" 2>&1 &
srs=$!
trap 'kill $srs 2>/dev/null || true; rm -rf "$rec"' EXIT
sleep 1
$bin/examples/api_load hammer --http 127.0.0.1:47080 --token "$token" --clients "$clients" \
  --stop-file "$rec/stop" >"$rec/hammer.json" &
hammer=$!
$bin/examples/loadgen --calls "$calls" --cps "$cps" --talk "$talk" \
  --target 127.0.0.1:47060 --recordings "$rec" ${LOADGEN_ARGS:-} | tail -1 >"$rec/loadgen.json"
loadgen_ok=$?
touch "$rec/stop"
wait $hammer
echo "loadgen: $(cat "$rec/loadgen.json")"
echo "hammer: $(cat "$rec/hammer.json")"
# Every call in the index (the publisher kept up beside the audit writes).
indexed=$(python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from recordings").fetchone()[0])' "$rec/index.sqlite")
verify=$($bin/srs audit --verify --recordings "$rec" 2>&1)
verify_ok=$?
faults=$(grep -c -E "index unusable|audit trail cannot be written" "$rec/srs.log")
echo "indexed: $indexed/$calls; audit: $verify; index faults logged: $faults"
if [ "$loadgen_ok" -ne 0 ] || [ "$indexed" -ne "$calls" ] || [ "$verify_ok" -ne 0 ]; then
  echo "FAILED: something was lost (see above)"
  exit 1
fi
echo "OK: $calls/$calls calls recorded and indexed while the API was hammered"

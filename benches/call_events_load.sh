#!/usr/bin/env bash
# Call-event load figures for docs/performance.md (issue 14).
#
#   bash benches/call_events_load.sh                 # events accepted per second, alone
#   bash benches/call_events_load.sh 2000 100 60     # 2,000 calls while events are posted
#
# Alone: `srs serve` (release) on loopback, then examples/event_feeder posts
# EVENTS_CALLS (default 20,000) synthetic calls' T-Lib-like logs (6 events
# each) in batches of BATCH (100) over CONNECTIONS (4) connections, as fast
# as they are taken: its JSON line has events_per_s.
#
# With CALLS CPS TALK_S: the same server records CALLS calls from
# examples/loadgen (which verifies every recording in the drop) while the
# feeder posts events at RATE events/s (default 80% of the figure measured
# alone first, or set RATE=N to skip that run) for as long as the calls
# last. Prints the load generator's JSON (every call recorded and verified:
# nothing lost) and the feeder's (events accepted, refused).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q --bin srs --example loadgen --example event_feeder
rec=$(mktemp -d)
./target/release/srs serve --sip 127.0.0.1:47160 --http 127.0.0.1:47180 \
  --recordings "$rec" --rtp-ports 50000-59999 >"$rec/srs.log" 2>&1 &
srs=$!
trap 'kill $srs 2>/dev/null || true; rm -rf "$rec"' EXIT
sleep 1
feed() { ./target/release/examples/event_feeder --http 127.0.0.1:47180 \
  --batch "${BATCH:-100}" --connections "${CONNECTIONS:-4}" "$@" | tail -1; }
if [ -z "${RATE:-}" ]; then
  alone=$(feed --generate "${EVENTS_CALLS:-20000}")
  echo "events alone: $alone"
  RATE=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["events_per_s"] * 0.8))' "$alone")
fi
[ $# -ge 3 ] || exit 0
calls=$1 cps=$2 talk=$3
# Enough events for the whole run at RATE: the calls take CALLS/CPS + TALK s.
secs=$(python3 -c "print(int($calls / $cps + $talk + 5))")
ev_calls=$(python3 -c "print(int($RATE * $secs / 6) + 1)")
./target/release/examples/event_feeder --generate "$ev_calls" --print > "$rec/events.jsonl"
# Fresh ids: the log of the first run would be duplicates.
sed -i 's/FEED/LOAD/g' "$rec/events.jsonl"
feed --file "$rec/events.jsonl" --rate "$RATE" >"$rec/feeder.json" &
feeder=$!
./target/release/examples/loadgen --calls "$calls" --cps "$cps" --talk "$talk" \
  --target 127.0.0.1:47160 --recordings "$rec" | tail -1 >"$rec/loadgen.json" || true
wait $feeder || true
echo "loadgen (every call verified in the drop): $(cat "$rec/loadgen.json")"
echo "feeder at $RATE events/s: $(cat "$rec/feeder.json")"
curl -s http://127.0.0.1:47180/metrics | grep -E '^srs_(call_events_received_total|recordings_published_total|rtp_packets_(received|lost)_total|publish_duration_seconds_(sum|count)) '

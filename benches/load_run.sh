#!/usr/bin/env bash
# One load measurement for docs/performance.md (issue 6):
#   bash benches/load_run.sh CALLS CPS TALK_S
# Starts `srs serve` (release) on loopback, runs the load generator (which
# verifies every recording by reading the drop, not through the server's
# API, so that verifying costs the server nothing), samples
# the server's CPU (user+sys from /proc), peak RSS and open descriptors, then
# runs the UDP floor probe with the same number of streams, bare and then
# with --write (the recording floor: decode + write each stream to a file in
# the same file system as the drop). Prints one summary line per program
# (JSON from the load generator and the two floors).
# Optional: SRS_CONFIG=file (a config for the server, e.g. formats with
# ogg-opus), LOADGEN_ARGS="..." (extra load generator flags, e.g.
# --publish-wait 600), FLOOR=0 (skip the floor probe).
set -euo pipefail
calls=${1:?calls} cps=${2:?cps} talk=${3:?talk}
cd "$(dirname "$0")/.."
cargo build --release -q --bin srs --example loadgen --example udp_floor
rec=$(mktemp -d)
./target/release/srs serve ${SRS_CONFIG:+--config "$SRS_CONFIG"} --sip 127.0.0.1:47060 --http 127.0.0.1:47080 \
  --recordings "$rec" --rtp-ports 50000-59999 >"$rec/srs.log" 2>&1 &
srs=$!
trap 'kill $srs 2>/dev/null || true; rm -rf "$rec"' EXIT
sleep 1
ticks() { awk '{print $14+$15}' /proc/$srs/stat; }
hz=$(getconf CLK_TCK)
t0=$(ticks); rss=0; fds=0
( while kill -0 $srs 2>/dev/null; do
    r=$(awk '/VmRSS/{print $2}' /proc/$srs/status); f=$(ls /proc/$srs/fd | wc -l)
    echo "$r $f"; sleep 1; done ) >"$rec/samples" &
sampler=$!
base_rss=$(awk '/VmRSS/{print $2}' /proc/$srs/status)
./target/release/examples/loadgen --calls "$calls" --cps "$cps" --talk "$talk" \
  --target 127.0.0.1:47060 --recordings "$rec" ${LOADGEN_ARGS:-} | tail -1 >"$rec/loadgen.json" || true
t1=$(ticks)
kill $sampler 2>/dev/null || true
peak="$(sort -n -k1 "$rec/samples" | tail -1 | cut -d' ' -f1) $(sort -n -k2 "$rec/samples" | tail -1 | cut -d' ' -f2)"
echo "loadgen: $(cat "$rec/loadgen.json")"
python3 - "$rec/loadgen.json" "$((t1 - t0))" "$hz" "$base_rss" "$peak" "$calls" <<'PY'
import json, sys
lg = json.load(open(sys.argv[1])); ticks, hz = int(sys.argv[2]), int(sys.argv[3])
base = int(sys.argv[4]); peak_rss, peak_fds = map(int, sys.argv[5].split()); calls = int(sys.argv[6])
cpu = ticks / hz; pk = lg.get("packets_received") or lg.get("packets_sent") or 1
print(json.dumps({"server_cpu_s": cpu, "server_us_per_packet": round(cpu * 1e6 / pk, 2),
  "rss_per_call_kib": round((peak_rss - base) / calls, 1), "peak_rss_kib": peak_rss, "peak_fds": peak_fds}))
PY
if [ "${FLOOR:-1}" != 0 ]; then
  ./target/release/examples/udp_floor --streams $((2 * calls)) --seconds 10 | tail -1
  ./target/release/examples/udp_floor --streams $((2 * calls)) --seconds 10 --write "$rec/floor" | tail -1
fi

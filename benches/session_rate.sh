#!/usr/bin/env bash
# Session rate (issue 6): SIPp's load scenario (tests/peers/sipp/
# siprec_uac_load.xml: SIPREC INVITE with metadata, label 1 streaming,
# immediate BYE with -d 0) against `srs serve` (release) on loopback.
#   bash benches/session_rate.sh RATE CALLS
# DROP_PARENT=DIR puts the drop in DIR (default: mktemp's). Use a journaled
# file system there: on ext4 *without* a journal, creating files costs
# a scan past every inode deleted in the last 60-360 s (`recently_deleted`
# in fs/ext4/ialloc.c), so a run right after the previous run's cleanup
# measures that scan (55% of the server's CPU at 800 sessions/s here).
# LOG_OUT=FILE keeps the server's log (e.g. with RUST_LOG=info,srs=debug for
# the publisher's batch timings).
# ENCRYPT=1 turns encryption at rest on (issue 15: a fresh age key, the
# recorder holding only its public key), so that the rate with and without
# can be compared (run both, one after the other, on a quiet machine).
# Prints SIPp's successful/failed calls and achieved rate, the server's CPU
# per session, and how many recordings were published.
set -euo pipefail
rate=${1:?rate} calls=${2:?calls}
cd "$(dirname "$0")/.."
cargo build --release -q --bin srs
rec=$(mktemp -d ${DROP_PARENT:+-p "$DROP_PARENT"})
# One SIPp source sends everything: lift the per-source limit (default 500
# new sessions/s per address, then 503) so the server itself is measured.
printf '[sip]\nrate_limit = 100000\n' >"$rec/srs.toml"
if [ "${ENCRYPT:-0}" = 1 ]; then
  key=$(./target/release/srs key generate --out "$rec/age-identity.txt" 2>/dev/null)
  printf '[encryption]\nrecipients = ["%s"]\n' "$key" >>"$rec/srs.toml"
fi
./target/release/srs serve --config "$rec/srs.toml" --sip 127.0.0.1:25060 --http 127.0.0.1:25080 \
  --recordings "$rec" --rtp-ports 20000-31999 >"$rec/srs.log" 2>&1 &
srs=$!
trap 'kill $srs 2>/dev/null || true; [ -n "${LOG_OUT:-}" ] && cp "$rec/srs.log" "$LOG_OUT"; rm -rf "$rec"' EXIT
sleep 1
ticks() { awk '{print $14+$15}' /proc/$srs/stat; }
hz=$(getconf CLK_TCK)
t0=$(ticks)
start=$(date +%s.%N)
(cd tests/peers/sipp && sipp -sf siprec_uac_load.xml -r "$rate" -l 3000 -m "$calls" -d 0 \
  -i 127.0.0.1 -p 25071 -mp 26100 127.0.0.1:25060 -nostdin -timeout 300s \
  -trace_stat -stf "$rec/stat.csv" >"$rec/sipp.out" 2>&1) || true
# Every answered session published? (Above capacity some INVITEs get
# 503 Overloaded: SIPp counts those as failed calls.)
ok=$(awk -F'|' '/Successful call/ {gsub(/ /, "", $3); print $3}' "$rec/sipp.out")
for _ in $(seq 1 600); do
  pub=$(curl -s http://127.0.0.1:25080/healthz | python3 -c "import json,sys; print(json.load(sys.stdin)['recordings_published'])")
  [ "$pub" -ge "${ok:-$calls}" ] && break
  sleep 0.1
done
end=$(date +%s.%N)
t1=$(ticks)
grep -E "Successful call|Failed call|Call Rate" "$rec/sipp.out" | sed 's/  */ /g'
python3 - "$calls" "$((t1 - t0))" "$hz" "$pub" "$start" "$end" "$rec/srs.log" <<'PY'
import sys
calls, ticks, hz, pub = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
wall = float(sys.argv[6]) - float(sys.argv[5])
cpu = ticks / hz
refused = sum(1 for l in open(sys.argv[7]) if "Overloaded until it drains" in l)
print(f"published {pub}/{calls}; {refused} overload episodes; server cpu {cpu:.2f} s = {cpu * 1000 / calls:.2f} ms per session; "
      f"{calls / wall:.0f} sessions/s from first INVITE to last publication ({wall:.1f} s)")
PY

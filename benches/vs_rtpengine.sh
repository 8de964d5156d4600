#!/usr/bin/env bash
# Side-by-side CPU per recorded call, srs vs rtpengine (issue 6):
#   bash benches/vs_rtpengine.sh CALLS CPS TALK_S
# On loopback, the same load (CALLS calls at CPS per second, TALK_S seconds
# of two 20 ms PCMU streams each) from the same RTP sender
# (examples/common/sender.rs):
#   1. srs serve, driven by examples/loadgen.rs over SIPREC, recordings checked
#      by loadgen in the file drop;
#   2. Debian's rtpengine (userspace: --table=-1, no kernel module), recording
#      to pcap, driven by examples/rtpengine_load.rs over its ng protocol,
#      packets counted in the pcaps.
# Each server's CPU is user+sys from /proc/PID/stat. Prints both JSON lines,
# then one line: CPU ms per recorded call of each, the ratio rtpengine/srs,
# and both losses.
#
# Not like for like: rtpengine is a media proxy, so besides writing each
# packet to its pcap it also relays it to the other side (one more recvmsg
# and sendmsg's worth of work per packet), which srs, a recording endpoint,
# does not. srs also does more per packet than a pcap append (jitter buffer,
# decoding, WAV/Opus files, metadata, index).
# rtpengine_load waits 100 ms after a call's last packet before `delete`
# (see its doc comment: with --delete-delay=0 an immediate delete races the
# last packet).
# Binaries come from $CARGO_TARGET_DIR (default ./target).
set -euo pipefail
calls=${1:?calls} cps=${2:?cps} talk=${3:?talk}
cd "$(dirname "$0")/.."
cargo build --release -q --bin srs --example loadgen --example rtpengine_load
bin=${CARGO_TARGET_DIR:-./target}/release
work=$(mktemp -d)
srs="" rte=""
cleanup() {
  for p in $srs $rte; do kill "$p" 2>/dev/null || true; done
  for p in $srs $rte; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# 1. srs
mkdir "$work/srs"
"$bin/srs" serve --sip 127.0.0.1:47060 --http 127.0.0.1:47080 \
  --recordings "$work/srs" --rtp-ports 50000-59999 >"$work/srs.log" 2>&1 &
srs=$!
sleep 1
kill -0 $srs || { echo "srs did not start:"; cat "$work/srs.log"; exit 1; }
t0=$(ticks $srs)
"$bin/examples/loadgen" --calls "$calls" --cps "$cps" --talk "$talk" \
  --target 127.0.0.1:47060 --recordings "$work/srs" >"$work/loadgen.out" ||
  { echo "loadgen failed:"; cat "$work/loadgen.out"; } >&2
t1=$(ticks $srs)
kill $srs; wait $srs 2>/dev/null || true; srs=""
tail -1 "$work/loadgen.out" >"$work/srs.json"

# 2. rtpengine
mkdir "$work/rte"
rtpengine --foreground --log-stderr --table=-1 --interface=127.0.0.1 \
  --listen-ng=127.0.0.1:22223 --port-min=20000 --port-max=29999 \
  --recording-dir="$work/rte" --recording-method=pcap --recording-format=raw \
  --num-threads=2 --delete-delay=0 -L 4 >"$work/rtpengine.log" 2>&1 &
rte=$!
sleep 1
kill -0 $rte || { echo "rtpengine did not start:"; cat "$work/rtpengine.log"; exit 1; }
"$bin/examples/rtpengine_load" --calls "$calls" --cps "$cps" --talk "$talk" \
  --ng 127.0.0.1:22223 --recording-dir "$work/rte" --pid $rte >"$work/rte.out" ||
  { echo "rtpengine_load failed:"; cat "$work/rte.out"; } >&2
kill $rte; wait $rte 2>/dev/null || true; rte=""
tail -1 "$work/rte.out" >"$work/rte.json"

echo "srs (loadgen):            $(cat "$work/srs.json")"
echo "rtpengine (rtpengine_load): $(cat "$work/rte.json")"
python3 - "$work/srs.json" "$work/rte.json" "$((t1 - t0))" "$hz" <<'PY'
import json, sys
try:
    s = json.load(open(sys.argv[1])); r = json.load(open(sys.argv[2]))
except ValueError as e:
    sys.exit(f"a generator gave no JSON line: {e}")
srs_cpu = int(sys.argv[3]) / int(sys.argv[4])
srs_calls = s.get("verified") or 0
rte_calls = r["calls"] - r["failed"]
srs_ms = srs_cpu * 1e3 / srs_calls if srs_calls else float("nan")
rte_ms = (r["target_cpu_s"] or 0) * 1e3 / rte_calls if rte_calls else float("nan")
srs_loss = s.get("lost")
rte_loss = r["packets_sent"] - r["packets_recorded"]
ratio = rte_ms / srs_ms if srs_ms and srs_ms == srs_ms else float("nan")
print(f"cpu per recorded call: srs {srs_ms:.2f} ms ({srs_cpu:.2f} s / {srs_calls}), "
      f"rtpengine {rte_ms:.2f} ms ({r['target_cpu_s']:.2f} s / {rte_calls}), "
      f"ratio rtpengine/srs {ratio:.2f}; loss: srs {srs_loss}, rtpengine {rte_loss}")
ok = (s.get("failed") == 0 and srs_loss == 0 and r["failed"] == 0 and rte_loss <= 0)
sys.exit(0 if ok else 1)
PY

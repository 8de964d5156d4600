#!/usr/bin/env bash
# Soak (issue 7): steady churn for MINUTES with CONCURRENT calls of TALK
# seconds (new calls every second: CONCURRENT/TALK per second), against
# `srs serve` (release) on loopback. Samples the server's RSS, open
# descriptors and active sessions every 10 s into OUT/samples.csv, then
# prints the load generator's verdict and a summary of the steady state.
#   bash benches/soak.sh [MINUTES=30] [CONCURRENT=200] [TALK=20] [OUT]
set -euo pipefail
minutes=${1:-30} conc=${2:-200} talk=${3:-20}
cd "$(dirname "$0")/.."
out=${4:-target/soak}
mkdir -p "$out"
cargo build --release -q --bin srs --example loadgen
cps=$(python3 -c "print($conc/$talk)")
calls=$(python3 -c "print(int($conc/$talk*$minutes*60))")
rec=$(mktemp -d)
./target/release/srs serve --sip 127.0.0.1:63060 --http 127.0.0.1:63080 \
  --recordings "$rec" --rtp-ports 61000-62999 >"$out/srs.log" 2>&1 &
srs=$!
trap 'kill $srs 2>/dev/null || true; rm -rf "$rec"' EXIT
sleep 1
hz=$(getconf CLK_TCK)
( t0=$(date +%s)
  echo "t_s,rss_kib,fds,active_sessions,published,cpu_s"
  while kill -0 $srs 2>/dev/null; do
    r=$(awk '/VmRSS/{print $2}' /proc/$srs/status)
    f=$(ls /proc/$srs/fd | wc -l)
    h=$(curl -s --max-time 2 http://127.0.0.1:63080/healthz || echo '{}')
    a=$(echo "$h" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d.get('active_sessions',''), d.get('recordings_published',''))" 2>/dev/null || echo " ")
    c=$(awk -v hz="$hz" '{printf "%.1f", ($14+$15)/hz}' /proc/$srs/stat)
    echo "$(( $(date +%s) - t0 )),$r,$f,${a% *},${a#* },$c"
    sleep 10
  done ) >"$out/samples.csv" &
sampler=$!
echo "soak: $calls calls at $cps/s, $talk s each (~$conc concurrent), $minutes min; samples in $out/samples.csv"
set +e
./target/release/examples/loadgen --calls "$calls" --cps "$cps" --talk "$talk" \
  --target 127.0.0.1:63060 --recordings "$rec" >"$out/loadgen.out" 2>&1
lg=$?
set -e
sleep 15 # a last quiet sample or two, every call published
kill $sampler 2>/dev/null || true
tail -3 "$out/loadgen.out"
echo "loadgen exit: $lg"
python3 - "$out/samples.csv" "$talk" "$minutes" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["rss_kib"]]
talk, minutes = float(sys.argv[2]), float(sys.argv[3])
# Steady state: after the ramp (2 talk times) until the last new call.
steady = [r for r in rows if 2 * talk <= int(r["t_s"]) <= minutes * 60]
def col(rs, k): return [int(float(r[k])) for r in rs if r[k] not in ("", None)]
for k in ("rss_kib", "fds", "active_sessions"):
    v = col(steady, k)
    if not v: continue
    n = max(1, len(v) // 10)
    first, last = sum(v[:n]) / n, sum(v[-n:]) / n
    print(f"{k}: steady min {min(v)} max {max(v)}; first 10% avg {first:.0f}, last 10% avg {last:.0f} ({(last-first)/max(first,1)*100:+.1f}%)")
end = rows[-1]
print(f"after the load: rss_kib {end['rss_kib']} fds {end['fds']} active {end['active_sessions']} published {end['published']} cpu_s {end['cpu_s']}")
PY
exit $lg

#!/usr/bin/env bash
# Run every fuzz target for SECS seconds (default 600), one after another,
# and print a line per target: runs, coverage, corpus size, crashes.
# Usage: bash run_all.sh [SECS] [LOGDIR]
set -uo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
logs=${2:-target/fuzz-logs}
mkdir -p "$logs"
[ -d seeds/sip ] || bash make_seeds.sh
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
seeds_for() {
  case "$1" in
    sip_parse|sip_core) echo seeds/sip ;;
    sdp|multipart|metadata) echo seeds/body ;;
    *) echo "" ;;
  esac
}
status=0
for t in sip_parse sip_core sdp multipart metadata rtp srtp; do
  mkdir -p "corpus/$t"
  # shellcheck disable=SC2046
  cargo fuzz run -O "$t" "corpus/$t" $(seeds_for "$t") -- \
    -max_total_time="$secs" -print_final_stats=1 >"$logs/$t.log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$logs/$t.log" | tail -1)
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  echo "$t: exit=$rc runs=${runs:-?} ${cov:-cov: ?} corpus=$(find "corpus/$t" -type f | wc -l) artifacts=$crashes"
  [ "$rc" -eq 0 ] || status=1
done
exit $status

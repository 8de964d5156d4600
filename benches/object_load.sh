#!/usr/bin/env bash
# Issue 16, docs/performance.md: "2,000 calls lose nothing while uploads run".
#
#   bash benches/object_load.sh CALLS CPS TALK_S        # e.g. 2000 100 60
#
# Starts s3s-fs (the S3 server of the tests: SigV4 checked, multipart) on
# loopback with one bucket, then `srs serve` (release) with
# [storage.object] pointing at it (keep_local = true), and runs the load
# generator as benches/load_run.sh does (it verifies every call's
# recording in the drop: status, packets per stream, duration). While the
# calls run, the upload thread copies each published recording to the
# bucket (upload, read back, verify, record in the index). At the end it
# waits for the upload queue (.uploads) to drain and counts:
#   - recordings in the index        (= CALLS)
#   - recordings with their objects recorded in the index (recording_objects)
#   - recordings in the bucket       (metadata.json objects, = CALLS)
# and prints one JSON line with those counts, the peak upload backlog and
# how long the drain took after the last call. Exits 1 if any count is not
# CALLS or the load generator failed.
#
# Optional: INDEX=postgres://... (a shared index; password in
# SRS_INDEX_PASSWORD or PGPASSWORD; counted with psql), S3S_FS=path,
# DRAIN_S (default 1800), LOADGEN_ARGS="..." (extra loadgen flags).
set -euo pipefail
calls=${1:?calls} cps=${2:?cps} talk=${3:?talk}
cd "$(dirname "$0")/.."
cargo build --release -q --bin srs --example loadgen
s3s=${S3S_FS:-$(command -v s3s-fs || true)}
for f in "$HOME/.cargo/bin/s3s-fs" /work/tools/bin/s3s-fs; do [ -n "$s3s" ] || { [ -x "$f" ] && s3s=$f; } || true; done
[ -x "$s3s" ] || { echo "s3s-fs not found (cargo install s3s-fs@0.14.1 --features binary --locked)" >&2; exit 2; }
work=$(mktemp -d)
rec=$work/rec s3=$work/s3 bucket=recordings
mkdir -p "$rec" "$s3/$bucket"
"$s3s" --host 127.0.0.1 --port 47290 --access-key bench-access --secret-key bench-secret "$s3" \
  >"$work/s3s.log" 2>&1 &
s3pid=$!
cat >"$work/srs.toml" <<EOF
[storage.object]
url = "s3://$bucket/srs"
endpoint = "http://127.0.0.1:47290"
region = "us-east-1"
access_key_id = "bench-access"
secret_access_key = "bench-secret"
keep_local = true
EOF
"${CARGO_TARGET_DIR:-target}"/release/srs serve --config "$work/srs.toml" ${INDEX:+--index "$INDEX"} \
  --sip 127.0.0.1:47260 --http 127.0.0.1:47280 --recordings "$rec" --rtp-ports 50000-59999 \
  >"$work/srs.log" 2>&1 &
srs=$!
trap 'kill $srs $s3pid 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 1
# (.uploads appears with the first publication: no error before it.)
backlog() { { find "$rec/.uploads" -maxdepth 1 -type f ! -name '.*' 2>/dev/null || true; } | wc -l; }
( while kill -0 $srs 2>/dev/null; do backlog; sleep 1; done ) >"$work/backlog" &
sampler=$!
lg=0
"${CARGO_TARGET_DIR:-target}"/release/examples/loadgen --calls "$calls" --cps "$cps" --talk "$talk" \
  --target 127.0.0.1:47260 --recordings "$rec" ${LOADGEN_ARGS:-} | tail -1 >"$work/loadgen.json" || lg=$?
t_end=$(date +%s.%N)
deadline=$(( $(date +%s) + ${DRAIN_S:-1800} ))
while [ "$(backlog)" -gt 0 ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 1; done
drain=$(python3 -c "import time; print(round(time.time() - $t_end, 1))")
kill $sampler 2>/dev/null || true
left=$(backlog)
if [ -n "${INDEX:-}" ]; then
  q() { psql "$INDEX" -Atc "$1"; }
else
  q() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$rec/index.sqlite" "$1"; }
fi
indexed=$(q "SELECT COUNT(*) FROM recordings")
stored=$(q "SELECT COUNT(DISTINCT recording_id) FROM recording_objects")
in_bucket=$(find "$s3/$bucket" -name metadata.json | wc -l)
peak=$(sort -n "$work/backlog" | tail -1)
echo "loadgen: $(cat "$work/loadgen.json")"
echo "{\"calls\": $calls, \"loadgen_exit\": $lg, \"indexed\": $indexed, \"objects_recorded\": $stored, \"in_bucket\": $in_bucket, \"upload_backlog_peak\": ${peak:-0}, \"upload_backlog_left\": $left, \"drain_after_last_call_s\": $drain}"
grep -cE 'upload to the object store failed|still failing' "$work/srs.log" | sed 's/^/upload faults logged: /' || true
[ "$lg" = 0 ] && [ "$indexed" = "$calls" ] && [ "$stored" = "$calls" ] && [ "$in_bucket" = "$calls" ] && [ "$left" = 0 ]

#!/usr/bin/env bash
# Seeds from the vendor corpus: whole SIP messages, and their bodies.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p seeds/sip seeds/body
for f in ../tests/fixtures/corpus/*.sip ../tests/fixtures/corpus/*.xml; do
  n=$(basename "$f")
  cp "$f" "seeds/sip/$n"
  cp "$f" "seeds/body/$n"
done

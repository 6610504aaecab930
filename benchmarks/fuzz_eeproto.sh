#!/bin/sh
# Fuzz the C protocol reader (firmware/lib/eeproto) with libFuzzer + AddressSanitizer + UBSan for a
# bounded time, seeded with the golden vectors, and record the run in benchmarks/results/fuzz_eeproto.json.
#   benchmarks/fuzz_eeproto.sh [SECONDS]        (default 120; needs clang and libclang-rt-*-dev)
# The harness (firmware/test/fuzz_eeproto.c) aborts on any frame accepted that does not re-encode to
# itself with a correct CRC; libFuzzer stops at the first crash, sanitizer report or input slower than 5 s.
set -eu
cd "$(dirname "$0")/.."
SECS=${1:-120}
WORK=build/fuzz
OUT=benchmarks/results/fuzz_eeproto.json
rm -rf "$WORK/corpus" "$WORK/artifacts"
mkdir -p "$WORK/corpus" "$WORK/artifacts" "$(dirname "$OUT")"
make -s -C firmware fuzz BUILD="$PWD/$WORK"
# Seeds: every golden vector as raw wire bytes (mode byte 0x00) and as an unsealed packet (0x01).
.venv/bin/python - "$WORK/corpus" <<'PY'
import sys
from pathlib import Path

from cobs import cobs

out = Path(sys.argv[1])
for n, line in enumerate(Path("tests/data/protocol/vectors.txt").read_text().splitlines()):
    wire = bytes.fromhex(line.split("\t")[0])
    (out / f"wire{n:02d}").write_bytes(b"\x00" + wire)
    try:
        (out / f"packet{n:02d}").write_bytes(b"\x01" + cobs.decode(wire[:-1])[:-4])
    except cobs.DecodeError:
        pass
PY
start=$(date +%s)
set +e
"$WORK/fuzz_eeproto" -seed=1 -max_total_time="$SECS" -timeout=5 -max_len=33000 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$WORK/artifacts/" "$WORK/corpus" > "$WORK/fuzz.log" 2>&1
rc=$?
set -e
wall=$(( $(date +%s) - start ))
stat() { sed -n "s/^stat::$1: *//p" "$WORK/fuzz.log"; }
artifacts=$(ls "$WORK/artifacts" | wc -l)
cat > "$OUT" <<JSON
{
  "seconds": $SECS,
  "wall_seconds": $wall,
  "executions": $(stat number_of_executed_units),
  "executions_per_second": $(stat average_exec_per_sec),
  "corpus_units_added": $(stat new_units_added),
  "peak_rss_mb": $(stat peak_rss_mb),
  "exit_code": $rc,
  "crashes_or_hangs": $artifacts,
  "compiler": "$(clang --version | head -1)",
  "cpus": $(nproc),
  "command": "benchmarks/fuzz_eeproto.sh $SECS"
}
JSON
cat "$OUT"
if [ "$rc" -ne 0 ] || [ "$artifacts" -ne 0 ]; then
  tail -40 "$WORK/fuzz.log"
  echo "fuzz_eeproto: libFuzzer found a problem: inputs in $WORK/artifacts, log in $WORK/fuzz.log" >&2
  exit 1
fi

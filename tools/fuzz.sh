#!/usr/bin/env bash
# Coverage-guided fuzzing of the firmware: its frame receiver (fuzz_link) and the whole
# application on a fake UART (fuzz_app), with AddressSanitizer and UBSan (tests/fuzz/).
# Usage: bash tools/fuzz.sh [SECONDS per target, default 60] [OUT, default build/fuzz]
# A crash stops with status 1 and leaves its input in OUT/findings/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
out="${2:-build/fuzz}"
.venv/bin/python tests/fuzz/build.py "$out"
for target in link app; do
    mkdir -p "$out/findings/$target"
    echo "fuzz: $target for $seconds s" >&2
    "$out/fuzz_$target" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
        -artifact_prefix="$out/findings/$target/" "$out/corpus/$target" \
        > "$out/$target.log" 2>&1 || { tail -n 40 "$out/$target.log" >&2; exit 1; }
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" \
        "$out/$target.log" | sed "s/^/fuzz: $target /" >&2
    grep -E "cov: [0-9]+" "$out/$target.log" | tail -n 1 | sed "s/^/fuzz: $target /" >&2
done

#!/usr/bin/env bash
# The GPU check: every part of benchmarks/gpu_check.py in its own process, each capped in time, results appended
# to $OUT/gpu_check.md as each part finishes (a part that times out or fails says so and the next one runs).
# About 8 minutes on one H200. Needs torch (CUDA), timm, transformers; mmengine for the training smoke only.
#
#   OUT=results bash benchmarks/gpu_check.sh            # on a GPU machine, from the repository root
#   WHEELS=.whl OUT=results bash benchmarks/gpu_check.sh   # first install the wheels in .whl (e.g. mmengine, addict,
#                                                          # yapf, termcolor, platformdirs) into /tmp/site
#   SMALL=1 OUT=/tmp/check bash benchmarks/gpu_check.sh    # tiny shapes: check the script on a CPU
# PARTS="env vitdet" runs only those parts; TIMEOUT_SCALE=2 doubles every part's time cap.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_check_results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if [ -n "${WHEELS:-}" ] && ! $PY -c "import mmengine" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
args=(--out "$OUT")
if [ -n "${SMALL:-}" ]; then args+=(--small); fi
failed=0
run() {  # run PART SECONDS
  local part=$1 start=$SECONDS cap
  case " ${PARTS:-$part} " in *" $part "*) ;; *) return 0 ;; esac
  cap=$(awk -v c="$2" -v s="${TIMEOUT_SCALE:-1}" 'BEGIN { printf "%.2f", c * s }')
  echo "== $part (at most ${cap} s)"
  timeout --kill-after=10 "$cap" $PY -m benchmarks.gpu_check "$part" "${args[@]}" 2>&1 | tee "$OUT/$part.log" | tail -40
  local rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
    failed=$((failed + 1))
    local why="exit $rc"
    if [ "$rc" = 124 ]; then why="timed out after ${cap} s"
    elif [ "$rc" = 137 ]; then why="killed (SIGKILL: out of time after ${cap} s, or out of memory)"; fi
    printf '### %s: FAILED (%s, %d s)\n\nlast lines of %s.log:\n\n```\n%s\n```\n\n' "$part" "$why" $((SECONDS - start)) \
      "$part" "$(tail -15 "$OUT/$part.log")" >> "$OUT/gpu_check.md"
  fi
}
run env 60
run pretrain-b 130
run pretrain-l 110
run asymmetric 60
run vitdet 60
run train 100
echo "results: $OUT/gpu_check.md ($failed part(s) failed)"
[ "$failed" = 0 ]

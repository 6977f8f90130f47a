#!/usr/bin/env bash
# Usage: bash tools/dist_test.sh CONFIG CHECKPOINT NGPUS [test.py args...]
# Multi-node: NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 bash tools/dist_test.sh CONFIG CKPT 8
# Without CUDA, NGPUS processes run over gloo on the CPU.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/launch_dist.sh" "$GPUS" "$here/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"

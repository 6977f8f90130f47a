#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NGPUS [train.py args...]
# Multi-node: NNODES=2 NODE_RANK=0 MASTER_ADDR=host0 bash tools/dist_train.sh CONFIG 8
# Without CUDA, NGPUS processes run DDP over gloo on the CPU.
set -euo pipefail
CONFIG=$1
GPUS=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/launch_dist.sh" "$GPUS" "$here/train.py" "$CONFIG" --launcher pytorch "$@"

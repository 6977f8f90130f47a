#!/usr/bin/env bash
# The torchrun launch shared by dist_train.sh and dist_test.sh:
#   bash tools/launch_dist.sh NGPUS SCRIPT [script args...]
# Multi-node through NNODES / NODE_RANK / MASTER_ADDR / PORT; PYTHON picks the interpreter. Without CUDA, the
# NGPUS processes run over gloo on the CPU.
set -euo pipefail
GPUS=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
PYTHONPATH="$here/..:${PYTHONPATH:-}" exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$GPUS" --master_port="${PORT:-29500}" "$@"

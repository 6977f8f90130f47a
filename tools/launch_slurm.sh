#!/usr/bin/env bash
# The srun launch shared by slurm_train.sh and slurm_test.sh, one task per GPU (ranks and the master address
# come from SLURM, see mae_backbone/engine/launch.py):
#   bash tools/launch_slurm.sh PARTITION JOB_NAME SCRIPT [script args...]
# GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (10), SRUN_ARGS, PYTHON.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
shift 2
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2086  # SRUN_ARGS is a list of srun options
PYTHONPATH="$here/..:${PYTHONPATH:-}" exec srun -p "$PARTITION" --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" --ntasks="${GPUS:-8}" --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="${CPUS_PER_TASK:-10}" --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$@"

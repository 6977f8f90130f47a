#!/usr/bin/env bash
# Usage: GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# One task per GPU; GPUS_PER_NODE, CPUS_PER_TASK (10), SRUN_ARGS as tools/launch_slurm.sh says.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/launch_slurm.sh" "$PARTITION" "$JOB_NAME" \
    "$here/train.py" "$CONFIG" --work-dir "$WORK_DIR" --launcher slurm "$@"

#!/usr/bin/env bash
# Usage: GPUS=8 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# One task per GPU; GPUS_PER_NODE, CPUS_PER_TASK (5 here: testing loads less data), SRUN_ARGS as
# tools/launch_slurm.sh says.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
CPUS_PER_TASK=${CPUS_PER_TASK:-5} exec bash "$here/launch_slurm.sh" "$PARTITION" "$JOB_NAME" \
    "$here/test.py" "$CONFIG" "$CHECKPOINT" --launcher slurm "$@"

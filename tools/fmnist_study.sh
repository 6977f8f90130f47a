#!/usr/bin/env bash
# The Fashion-MNIST partial fine-tuning study of docs/partial_finetuning.md, end to end:
#
#   bash tools/fmnist_study.sh [WORK_DIR]            # default work_dirs/fmnist_study
#
# 1. MAE pretraining, configs/mae/mae_vit-d96-p4_1xb256-10e_fashion-mnist.py, into WORK_DIR/mae (resumed when
#    interrupted; skipped when MAE_CKPT names the checkpoint to start from);
# 2. the study: k in {0, 1, 2, 4, all}, MAE vs random init, EPOCHS epochs per point, once per seed in SEEDS, JOBS
#    points at once (each its own process), validating every VAL_INTERVAL epochs. Interrupted, it reports the points
#    finished so far; run it again to train the rest.
#
# Environment (defaults): EPOCHS (20 with a GPU; 1 on a CPU, where 20 would take about 16 hours on 2 cores),
# SEEDS ("0 1 2"), JOBS (1 on a CPU; with a GPU, cores / 3), WORKERS (data-loader workers per point: 0 on a CPU, 2
# with a GPU), VAL_INTERVAL (5), DATA_ROOT (/usr/share/datasets/fashion-mnist), PYTHON (python), MAE_CKPT (the
# pretrained checkpoint to start from), EXTRA (more --cfg-options for every point, e.g.
# "train_dataloader.dataset.limit=6000"; the warm-up stays 20 iterations), PRETRAIN_EXTRA (the same for the
# pretraining). With a GPU the points are bound by their data loading (a 96-d model does little GPU work per
# image): keep JOBS x (WORKERS + 1) near the number of cores.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-work_dirs/fmnist_study}
PY=${PYTHON:-python}
DATA_ROOT=${DATA_ROOT:-/usr/share/datasets/fashion-mnist}
SEEDS=${SEEDS:-0 1 2}
VAL_INTERVAL=${VAL_INTERVAL:-5}
mae=${MAE_CKPT:-}
if [ -z "${SEEDS// /}" ]; then echo "SEEDS is empty: give one or more seeds, e.g. SEEDS=\"0 1 2\"" >&2; exit 2; fi
if [ -n "$mae" ] && [ ! -f "$mae" ]; then echo "MAE_CKPT=$mae does not exist" >&2; exit 2; fi
read -r -a extra <<< "${EXTRA:-}"
read -r -a pretrain_extra <<< "${PRETRAIN_EXTRA:-}"
gpu=$($PY -c "import torch; print(int(torch.cuda.is_available()))")
EPOCHS=${EPOCHS:-$([ "$gpu" = 1 ] && echo 20 || echo 1)}
cores=$(nproc)  # the cores this process may use
JOBS=${JOBS:-$([ "$gpu" = 1 ] && echo $(( cores / 3 > 1 ? cores / 3 : 1 )) || echo 1)}
WORKERS=${WORKERS:-$([ "$gpu" = 1 ] && echo 2 || echo 0)}

if [ -z "$mae" ]; then  # pretrain, or finish an interrupted pretraining (a finished one resumes to its end at once)
  $PY tools/train.py configs/mae/mae_vit-d96-p4_1xb256-10e_fashion-mnist.py --work-dir "$WORK/mae" \
    $([ -f "$WORK/mae/last_checkpoint" ] && echo --resume) \
    --cfg-options data_root="$DATA_ROOT" ${pretrain_extra[@]+"${pretrain_extra[@]}"}
  mae=$(cat "$WORK/mae/last_checkpoint")  # the run's final checkpoint (mmengine writes its path there)
fi
# exec: a time limit (timeout, a scheduler) signals the study itself, which then reports what finished
# shellcheck disable=SC2086  # SEEDS is a list
exec $PY tools/partial_finetune_study.py configs/classification/vit-d96-p4_mae-partial_1xb256-1e_fashion-mnist.py \
  --blocks 0 1 2 4 all --pretrained "$mae" --baseline-random-init --epochs "$EPOCHS" --seeds $SEEDS \
  --jobs "$JOBS" --work-dir "$WORK" \
  --cfg-options data_root="$DATA_ROOT" train_cfg.val_interval="$VAL_INTERVAL" \
  train_dataloader.num_workers="$WORKERS" val_dataloader.num_workers="$WORKERS" ${extra[@]+"${extra[@]}"}

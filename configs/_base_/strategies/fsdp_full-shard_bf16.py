# Sharded data parallel for the large pretraining configs: mmengine's FlexibleRunner with FSDPStrategy (the
# pattern of mmpretrain's configs/mae/benchmarks/vit-huge-p14_8xb128-fsdp-coslr-50e_in1k.py), full sharding
# of parameters, gradients and optimizer state, with
# - one FSDP unit per transformer block (encoder and decoder): only one block's full weights live at a time;
# - bf16 parameters in compute and all-gathers, float32 master weights and float32 gradient reduction (on
#   hardware without native bf16 this follows the one precision rule: fp16 with loss scaling on GPUs older
#   than Ampere, fp32 on CPUs; mae_backbone/precision.py);
# - activation checkpointing of the encoder blocks: set model=dict(grad_checkpointing=True) next to this base
#   (the model's own checkpointing: parameter names, layer-wise groups and checkpoints stay those of the plain
#   configs);
# - whole checkpoints written by rank 0 (state_dict_cfg='full'), loadable by every tool, on any GPU count.
# Start it through tools/dist_train.sh / tools/slurm_train.sh (FSDP needs a process group, even on one GPU).
runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    state_dict_cfg='full',
    model_wrapper=dict(
        auto_wrap_policy='vit_block_wrap_policy',
        sharding_strategy='FULL_SHARD',
        use_orig_params=True,  # the optimizer groups parameters by layer (weight decay, layer-wise lr)
        sync_module_states=True,  # rank 0's initial weights everywhere, as DDP (ranks seed differently)
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32', buffer_dtype='float32')))

# The paper recipe of mae_vit-large-p16_8xb64-accum8-amp-1600e_in1k.py
# (batch 4096, same schedule) trained with FSDP: parameters, gradients and optimizer state sharded over the GPUs,
# blocks checkpointed (configs/_base_/strategies/fsdp_full-shard_bf16.py).
#   bash tools/dist_train.sh configs/mae/mae_vit-large-p16_8xb64-accum8-fsdp-amp-1600e_in1k.py 8
# With the memory this frees, a larger per-GPU batch and fewer accumulation steps (same product) run faster.
_base_ = ['./mae_vit-large-p16_8xb64-accum8-amp-1600e_in1k.py', '../_base_/strategies/fsdp_full-shard_bf16.py']
model = dict(grad_checkpointing=True)  # activation checkpointing of the encoder blocks

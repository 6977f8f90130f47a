# Partial fine-tuning (paper Sec. 4.3, Fig. 9): the fine-tuning recipe, training only the last k
# blocks (+ norm + head). Change k with --cfg-options model.finetune_blocks=K, or sweep it with
# tools/partial_finetune_study.py; model.variant='mlp' (with k=1) trains the last block's MLP only.
_base_ = './vit-base-p16_mae-ft_8xb128-100e_in1k.py'
model = dict(finetune_blocks=4)

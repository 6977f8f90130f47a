# Partial fine-tuning on Fashion-MNIST: the fine-tuning recipe, last k blocks trained
# (--cfg-options model.finetune_blocks=K, or tools/partial_finetune_study.py for a sweep).
_base_ = './vit-d96-p4_mae-ft_1xb256-1e_fashion-mnist.py'
model = dict(finetune_blocks=2)

"""Train any config: python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [bf16|fp16|off]]
    [--auto-scale-lr] [--no-validate] [--cfg-options k=v ...]

Multi-GPU / multi-node: tools/dist_train.sh (torchrun) or tools/slurm_train.sh (srun);
without CUDA the same launchers run DDP over gloo.
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--work-dir", help="default: work_dirs/<config name>")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from CKPT, or from the latest checkpoint in the work dir if no path is given")
    p.add_argument("--amp", nargs="?", const="bf16", choices=["bf16", "fp16", "off"],
                   help="override the config's mixed precision; a bare --amp (as in mmdet / mmseg / mmpretrain) means "
                        "the hardware's: bf16 where native, fp16 with loss scaling on GPUs older than Ampere, fp32 on "
                        "CPUs without native bf16 (with a warning)")
    p.add_argument("--auto-scale-lr", action="store_true",
                   help="scale the config's lr by (GPUs x batch) / auto_scale_lr.base_batch_size (mmdet / mmseg "
                        "configs); refused where the lr is already derived from blr x batch / 256")
    p.add_argument("--no-validate", action="store_true", help="train without validating during training")
    p.add_argument("--compile", action="store_true",
                   help="opt-in torch.compile of our MAE / classifier model (falls back to eager with a warning)")
    p.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune"], default="default",
                   help="torch.compile mode for --compile")
    p.add_argument("--cfg-options", nargs="+", action=DictAction,
                   help="override config keys, e.g. model.finetune_blocks=2; epochs=E retimes an epoch-based "
                        "schedule (max_epochs and the lr schedule's end); data_root=DIR moves every dataset path")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    p.add_argument("--local-rank", "--local_rank", type=int, default=None,
                   help="set by the legacy torch.distributed.launch; torchrun and slurm set it themselves")
    return p.parse_args(argv)


def enable_auto_scale_lr(cfg: Config) -> None:
    """mmdet / mmseg's --auto-scale-lr: lr x (world size x batch) / auto_scale_lr.base_batch_size, done by mmengine's
    Runner. Refused where the launcher already derives lr = blr x effective batch / 256 (it would scale twice)."""
    if cfg.get("blr") is not None and cfg.optim_wrapper.optimizer.get("lr") is None:
        raise SystemExit(f"--auto-scale-lr: this config derives lr = blr ({cfg.blr}) x effective batch / 256 from the "
                         f"real GPU count already; scaling again would scale twice. Drop --auto-scale-lr.")
    base = (cfg.get("auto_scale_lr") or {}).get("base_batch_size")
    if not base:
        raise SystemExit("--auto-scale-lr needs auto_scale_lr.base_batch_size in the config (the batch its lr is "
                         "for), e.g. --cfg-options auto_scale_lr.base_batch_size=64")
    cfg.auto_scale_lr = dict(cfg.auto_scale_lr, enable=True)


def prepare(args) -> Config:
    """The config ``args`` ask for: overrides, retimed epochs, work dir, resume, lr scaling, validation, compile."""
    cfg = Config.fromfile(args.config)
    from mae_backbone.engine import apply_cfg_options
    apply_cfg_options(cfg, args.cfg_options)  # epochs=E retimes the schedule, data_root=DIR moves the paths
    cfg.work_dir = args.work_dir or cfg.get("work_dir") or osp.join("work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.resume == "auto":
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    if args.compile:
        if cfg.model.get("type") not in ("MAEPretrainer", "MAEClassifier"):
            raise SystemExit(f"--compile applies to MAEPretrainer / MAEClassifier configs (pretraining, classification), "
                             f"not {cfg.model.get('type')}: drop --compile for detection / segmentation configs")
        cfg.model.compile = True if args.compile_mode == "default" else dict(mode=args.compile_mode)
    return cfg


def main():
    args = parse_args()
    if args.local_rank is not None:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    cfg = prepare(args)
    from mae_backbone.engine import build_runner, shutdown_distributed
    build_runner(cfg, args.launcher, amp=args.amp).train()
    shutdown_distributed()  # after a finished run only: a rank that fails exits at once and torchrun stops the rest


if __name__ == "__main__":
    main()

"""Evaluate a checkpoint with a config's test set: python tools/test.py CONFIG CKPT [--cfg-options k=v ...]"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), ".."))

from mmengine.config import Config, DictAction  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("config")
    p.add_argument("checkpoint")
    p.add_argument("--work-dir", help="default: work_dirs/test_<config name>")
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    args = p.parse_args()

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if not osp.isfile(args.checkpoint):
        sys.exit(f"checkpoint not found: {args.checkpoint}")
    cfg.work_dir = args.work_dir or osp.join("work_dirs", "test_" + osp.splitext(osp.basename(args.config))[0])
    cfg.model.pretrained = None  # the evaluated checkpoint holds every weight
    cfg.load_from, cfg.resume = args.checkpoint, False
    from mae_backbone.engine import build_runner, shutdown_distributed
    try:
        metrics = build_runner(cfg, args.launcher).test()
    finally:
        shutdown_distributed()
    print(" ".join(f"{k}: {v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()

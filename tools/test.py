"""Evaluate a checkpoint: python tools/test.py CONFIG CKPT [--split val|test] [--out results.pkl]
    [--show-dir DIR | --show [--wait-time S]] [--tta] [--cfg-options k=v ...]

Every weight of the checkpoint must match the model (strict load); the default split is the config's
validation set (``val_dataloader`` / ``val_evaluator``), which derived configs and --cfg-options edit.
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def dump_metric(cfg, path: str):
    """A metric that writes every prediction to ``path``: mmdet's (masks as RLE) for detection configs."""
    if cfg.get("default_scope") == "mmdet":
        from mmdet.evaluation import DumpDetResults
        return DumpDetResults(out_file_path=path)
    from mmengine.evaluator import DumpResults
    return DumpResults(out_file_path=path)


def evaluate(cfg, checkpoint: str, launcher: str, out=None) -> dict:
    """Build the runner, load every weight of ``checkpoint`` (strict) and test; ``out``: also dump the predictions."""
    from mae_backbone.engine import build_runner
    runner = build_runner(cfg, launcher, train=False)
    runner.load_checkpoint(checkpoint, strict=True)  # mmengine's default is non-strict
    if out:
        runner.test_evaluator.metrics.append(dump_metric(cfg, osp.abspath(out)))
    return runner.test()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint", help="a path, an http(s):// or file:// URL, or an official weights name")
    p.add_argument("--split", choices=["val", "test"], default="val",
                   help="evaluate val_dataloader (default) or the config's own test_dataloader")
    p.add_argument("--work-dir", help="default: work_dirs/test_<config name>")
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    p.add_argument("--show-dir", help="write <image>.png with ground truth and predictions drawn by the "
                                       "config's visualizer (detection / segmentation)")
    p.add_argument("--show", action="store_true", help="show each prediction in a window (needs a display; "
                                                        "--show-dir writes the pictures instead)")
    p.add_argument("--wait-time", type=float, default=2.0, help="seconds each --show window stays (default 2)")
    p.add_argument("--out", help="also dump the predictions: a .pkl file (mmengine DumpResults; detection: mmdet's "
                                 "DumpDetResults, masks as RLE); segmentation: a folder of label-map PNGs (as mmseg)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: wrap the model in the config's "
                                                       "tta_model (e.g. multi-scale + flip segmentation configs)")
    args = p.parse_args(argv)

    cfg = Config.fromfile(args.config)
    from mae_backbone.engine import apply_cfg_options
    apply_cfg_options(cfg, args.cfg_options)  # data_root=DIR moves every dataset path
    from mae_backbone.weights import DownloadError, resolve_checkpoint
    try:  # a path, an http(s):// / file:// URL (downloaded once, verified) or an official name
        checkpoint = str(resolve_checkpoint(args.checkpoint))
    except (FileNotFoundError, DownloadError) as e:
        sys.exit(str(e))
    cfg.work_dir = args.work_dir or osp.join("work_dirs", "test_" + osp.splitext(osp.basename(args.config))[0])
    if args.split == "val":  # base configs set test_dataloader as a copy made before any override
        cfg.test_dataloader, cfg.test_evaluator = cfg.val_dataloader, cfg.val_evaluator
    if "pretrained" in cfg.model:
        cfg.model.pretrained = None  # the evaluated checkpoint holds every weight
    has_tta_pipeline = "TestTimeAug" in str(cfg.test_dataloader.dataset.get("pipeline", ""))
    if not args.tta and has_tta_pipeline:
        sys.exit(f"{args.config} tests with a TestTimeAug (multi-scale / flip) pipeline: add --tta "
                 f"(or use the single-scale config it is based on)")
    if args.tta:
        if not cfg.get("tta_model") or not has_tta_pipeline:
            sys.exit("--tta needs a config with tta_model and a TestTimeAug test pipeline, e.g. *_ms-flip-test.py")
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    seg = cfg.get("default_scope") == "mmseg"
    if args.out and seg:
        # mmseg's --out: each prediction as a label-map PNG in the folder (IoUMetric output_dir), not a pickle of
        # the full-resolution logits (about 200 MB per ADE20K image)
        cfg.test_evaluator = dict(cfg.test_evaluator, output_dir=osp.abspath(args.out))
    elif args.out and not args.out.endswith((".pkl", ".pickle")):
        sys.exit(f"--out {args.out}: the dump is a pickle, name it *.pkl (segmentation configs: a folder)")
    if args.show:
        vis_hook = (cfg.get("default_hooks") or {}).get("visualization")
        if not vis_hook:
            sys.exit("--show needs a config with a visualization hook (detection / segmentation configs have one)")
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            sys.exit("--show opens a window per image and needs a display (DISPLAY is not set): use --show-dir DIR to "
                     "write the pictures instead")
        vis_hook.update(draw=True, show=True, wait_time=args.wait_time)
    if args.show_dir:
        if not cfg.get("visualizer"):
            sys.exit("--show-dir needs a config with a visualizer (detection / segmentation configs have one)")
        cfg.custom_hooks = list(cfg.get("custom_hooks", [])) + [
            dict(type="PredictionPNGHook", out_dir=osp.abspath(args.show_dir))]
    cfg.load_from, cfg.resume = None, False
    from mae_backbone.engine import shutdown_distributed
    metrics = evaluate(cfg, checkpoint, args.launcher, out=args.out if args.out and not seg else None)
    shutdown_distributed()  # the runner is out of scope, so its process group can be freed; not after a failure
    print(" ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}" for k, v in metrics.items()))
    if args.show_dir:
        print(f"predictions drawn to {osp.abspath(args.show_dir)}")
    if args.out:
        print(f"predictions dumped to {osp.abspath(args.out)}")


if __name__ == "__main__":
    main()

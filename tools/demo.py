"""`make demo`: MAE pretraining of a small ViT on real photos that ship offline, then a checkpoint
and a reconstruction picture (rows: masked input | reconstruction with visible patches | original)."""
import argparse
import os.path as osp
import time


from mmengine.config import Config, DictAction

DEFAULT_CONFIG = osp.join(osp.dirname(osp.abspath(__file__)), "..", "configs", "mae",
                          "mae_vit-demo-p8_1xb32-40e_photos.py")


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--work-dir", default="work_dirs/demo")
    p.add_argument("--photos", default="data/sample_photos", help="folder the bundled photos are exported to")
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = p.parse_args()

    from mae_backbone.data import export_sample_photos
    from mae_backbone.engine import build_runner
    from mae_backbone.engine.hooks import ReconstructionHook

    photos = export_sample_photos(args.photos)
    print(f"[demo] {len(photos)} photos in {args.photos}")
    cfg = Config.fromfile(args.config)
    cfg.train_dataloader.dataset.root = args.photos
    cfg.work_dir = args.work_dir
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    t0 = time.time()
    runner = build_runner(cfg)
    runner.train()
    hook = next(h for h in runner.hooks if isinstance(h, ReconstructionHook))
    ckpt = osp.join(runner.work_dir, f"epoch_{runner.epoch}.pth")
    print(f"[demo] trained {runner.epoch} epochs / {runner.iter} iterations in {time.time() - t0:.0f} s")
    print(f"[demo] checkpoint:      {ckpt}")
    print(f"[demo] reconstructions: {hook.last_path}")
    print(f"[demo] try: python tools/visualize_reconstruction.py {ckpt} {photos[0]} --out recon.png")


if __name__ == "__main__":
    main()

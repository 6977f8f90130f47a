"""Run a trained detector or segmenter on your own images.

    python tools/inference.py CONFIG CHECKPOINT IMAGE_OR_FOLDER [...] --out-dir OUT [--device cpu|cuda]
        [--score-thr 0.3] [--batch-size 1]

Detection configs (configs/mask_rcnn/*) go through mmdet's DetInferencer, segmentation configs (configs/upernet/*)
through mmseg's MMSegInferencer, with the config's own test pipeline (for the COCO configs: resize to 1024 and pad
to the 1024 x 1024 canvas). Writes OUT/vis/<image>.<ext> (predictions drawn) and OUT/preds/: detection
<image>.json (boxes, scores, labels, RLE masks); segmentation numbered label maps (mmseg's inferencer: in input
order). Inputs are named after their file: two with the same name are refused. The checkpoint is loaded strictly.

This is inference with a trained model. ``make demo`` / tools/demo.py is something else: it *pretrains* a small MAE
on bundled photos. Features for retrieval or k-NN come from the encoder alone (the pretrained checkpoint).
"""
import argparse
import os
import os.path as osp


IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_images(inputs):
    """Files given, plus the images inside folders given (sorted); a path that does not exist is an error."""
    out = []
    for path in inputs:
        if osp.isdir(path):
            found = sorted(osp.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_EXTS))
            if not found:
                raise SystemExit(f"no images ({', '.join(IMAGE_EXTS)}) in folder {path}")
            out += found
        elif osp.isfile(path):
            out.append(path)
        else:
            raise SystemExit(f"input not found: {path}")
    names = [osp.splitext(osp.basename(p))[0] for p in out]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise SystemExit(f"several inputs are named {clash[:3]}: the outputs are named after the image, so one would "
                         f"overwrite another; run them separately (another --out-dir) or rename them")
    return out


def build_inferencer(config: str, checkpoint: str, device: str):
    import torch
    from mmengine.config import Config

    import downstream  # noqa: F401  (MAEViT, PadToCanvas, ... in mmdet's / mmseg's registries)
    cfg = Config.fromfile(config)
    scope = cfg.get("default_scope")
    if scope not in ("mmdet", "mmseg"):
        raise SystemExit(f"{config} is not a detection or segmentation config (default_scope={scope!r}); "
                         f"classification checkpoints are evaluated with tools/test.py")
    backbone = cfg.model.get("backbone", {})
    if backbone.get("init_cfg"):
        backbone.init_cfg = None  # every weight comes from CHECKPOINT
    if "pretrained" in cfg.model:
        cfg.model.pretrained = None
    # no ground truth here: the inferencers drop LoadAnnotations, and the label checks that need it go too
    pipeline = cfg.test_dataloader.dataset.pipeline
    cfg.test_dataloader.dataset.pipeline = [t for t in pipeline if t["type"] not in ("LoadAnnotations",
                                                                                        "CheckSegLabels")]
    if scope == "mmdet":
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(model=cfg, weights=checkpoint, device=device, show_progress=False)
    else:
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=cfg, weights=checkpoint, device=device)
    # the inferencers load non-strictly: a checkpoint of another config would run half-initialised
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    try:
        inferencer.model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SystemExit(f"{checkpoint} does not match {config} (train with this config, or pass the config the "
                         f"checkpoint was trained with):\n{e}") from None
    from mmengine.model import revert_sync_batchnorm
    inferencer.model = revert_sync_batchnorm(inferencer.model).eval()  # SyncBN layers need no process group
    from mae_backbone.precision import autocast_modules
    autocast_modules(inferencer.model, cfg.get("autocast_modules") or {})  # the parts tools/test.py runs in bf16
    return inferencer, scope


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("checkpoint", help="a checkpoint trained with this config (tools/train.py's iter_*/epoch_*.pth)")
    p.add_argument("inputs", nargs="+", help="image files and / or folders of images")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--score-thr", type=float, default=0.3, help="detection: draw boxes scoring at least this")
    p.add_argument("--batch-size", type=int, default=1)
    args = p.parse_args(argv)
    from mae_backbone.weights import DownloadError, resolve_checkpoint
    try:
        args.checkpoint = str(resolve_checkpoint(args.checkpoint))  # a path or an http(s):// / file:// URL
    except (FileNotFoundError, DownloadError) as e:
        raise SystemExit(str(e))
    images = list_images(args.inputs)
    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    inferencer, scope = build_inferencer(args.config, args.checkpoint, device)
    if scope == "mmdet":
        inferencer(images, batch_size=args.batch_size, out_dir=args.out_dir, no_save_pred=False,
                   pred_score_thr=args.score_thr)
    else:
        inferencer(images, batch_size=args.batch_size, out_dir=args.out_dir, img_out_dir="vis", pred_out_dir="preds")
    print(f"{len(images)} image(s): predictions drawn to {osp.join(args.out_dir, 'vis')}, "
          f"written to {osp.join(args.out_dir, 'preds')}")


if __name__ == "__main__":
    main()

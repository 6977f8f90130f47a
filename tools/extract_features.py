"""Features of a folder (or list) of images from a pretrained encoder.

    python tools/extract_features.py IMAGES --checkpoint CKPT --out OUT_DIR [--pool avg|cls] [--layers -1 ...]
        [--img-size 224] [--batch-size 64] [--device cpu|cuda] [--precision bf16|fp32] [--workers 4]

IMAGES: a folder (ImageNet layout root/<class>/<image>, or flat), a text file of '<path> [label]' lines, or image
files. CKPT: a path, an http(s):// / file:// URL or an official name (mae_pretrain_vit_base, ...; docs/weights.md).
Writes OUT_DIR/features.npy (N x D float32, D = width x number of layers), paths.txt (one per row), labels.npy (class
index per row, -1 without class folders), classes.txt (folder names), meta.json (settings). Every --chunk-size images
are kept in OUT_DIR/chunks as they finish: rerunning the same command after an interruption continues from there.

Feature: the tokens after the block (--layers, negative from the end) through the encoder's final LayerNorm, then
the class token (--pool cls: MAE's linear-probing feature) or the mean of the patch tokens (--pool avg).
k-NN evaluation of two labelled folders: tools/knn_eval.py.
"""
import argparse
import json
import os
import os.path as osp



def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--pool", choices=["avg", "cls"], default="avg")
    p.add_argument("--layers", type=int, nargs="+", default=[-1], help="blocks to read (default: the last)")
    p.add_argument("--img-size", type=int, help="input size (default: the checkpoint's pretraining size)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16",
                   help="bf16 autocast where the device has native bf16, else fp32 (default)")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--chunk-size", type=int, default=8192)
    args = p.parse_args(argv)

    import numpy as np

    from mae_backbone.features import build_encoder, extract, image_dataset
    encoder, mean, std = build_encoder(args.checkpoint)
    src = args.images[0] if len(args.images) == 1 else args.images
    dataset = image_dataset(src, args.img_size or encoder.img_size[0], encoder.patch_embed.in_chans)
    out = extract(encoder, dataset, pool=args.pool, layers=args.layers, batch_size=args.batch_size, device=args.device,
                  precision=args.precision, mean=mean, std=std, num_workers=args.workers,
                  chunk_dir=osp.join(args.out, "chunks"), chunk_size=args.chunk_size)
    os.makedirs(args.out, exist_ok=True)
    np.save(osp.join(args.out, "features.npy"), out["features"].numpy())
    np.save(osp.join(args.out, "labels.npy"), out["labels"].numpy())
    with open(osp.join(args.out, "paths.txt"), "w") as f:
        f.write("\n".join(out["paths"]) + "\n")
    with open(osp.join(args.out, "classes.txt"), "w") as f:
        f.write("\n".join(getattr(dataset, "classes", []) or []) + "\n")
    with open(osp.join(args.out, "meta.json"), "w") as f:
        json.dump(dict(checkpoint=args.checkpoint, pool=args.pool, layers=args.layers, shape=list(out["features"].shape),
                       mean=list(mean), std=list(std), img_size=args.img_size or encoder.img_size[0]), f, indent=1)
    print(f"{tuple(out['features'].shape)} features of {len(out['paths'])} images -> {args.out}/features.npy")


if __name__ == "__main__":
    main()

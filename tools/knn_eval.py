"""Weighted k-NN accuracy of a pretrained encoder on a labelled train / val folder pair (DINO's protocol).

    python tools/knn_eval.py TRAIN_DIR VAL_DIR --checkpoint CKPT [--k 20] [--temperature 0.07] [--pool avg|cls]
        [--layers -1] [--img-size 224] [--batch-size 64] [--device cpu|cuda] [--out-dir DIR]

Both folders in the ImageNet layout (root/<class>/<image>; the val classes are indexed by the train folders). The
features are those of tools/extract_features.py, L2-normalised; each val image takes the k most cosine-similar
training images' classes, weighted by exp(similarity / T). Prints top-1 / top-5; --out-dir keeps the features (and
resumes them after an interruption).
"""
import argparse
import json
import os.path as osp



def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("train")
    p.add_argument("val")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--pool", choices=["avg", "cls"], default="avg")
    p.add_argument("--layers", type=int, nargs="+", default=[-1])
    p.add_argument("--img-size", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--out-dir", help="keep the features here (resumable)")
    args = p.parse_args(argv)

    from mae_backbone.features import build_encoder, extract, image_dataset, knn_classify
    encoder, mean, std = build_encoder(args.checkpoint)
    size, chans = args.img_size or encoder.img_size[0], encoder.patch_embed.in_chans
    train = image_dataset(args.train, size, chans, labelled=True)
    val = image_dataset(args.val, size, chans, labelled=True, classes=getattr(train, "classes", None))
    feats = {}
    for name, ds in (("train", train), ("val", val)):
        feats[name] = extract(encoder, ds, pool=args.pool, layers=args.layers, batch_size=args.batch_size,
                              device=args.device, precision=args.precision, mean=mean, std=std,
                              chunk_dir=osp.join(args.out_dir, name) if args.out_dir else None)
    result = knn_classify(feats["train"]["features"], feats["train"]["labels"], feats["val"]["features"],
                          feats["val"]["labels"], k=args.k, temperature=args.temperature,
                          num_classes=len(getattr(train, "classes", []) or []) or None)
    result.update(train_images=len(train), val_images=len(val), pool=args.pool, layers=args.layers)
    print(json.dumps(result))


if __name__ == "__main__":
    main()

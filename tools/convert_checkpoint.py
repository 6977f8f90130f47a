"""Convert a checkpoint into mae-backbone's native layout (official MAE / timm key names).

python tools/convert_checkpoint.py SRC DST --from {official,timm,mmpretrain,hf,native,auto} [--encoder-only]
"""
import argparse



def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--from", dest="source", default="auto",
                   choices=["auto", "official", "timm", "mmpretrain", "hf", "native"])
    p.add_argument("--encoder-only", action="store_true",
                   help="drop the decoder and mask token (the official mae_pretrain_vit_*.pth export)")
    p.add_argument("--check", metavar="ARCH", help="load the result strictly into this preset to verify it")
    args = p.parse_args()

    from mae_backbone.checkpoint import (convert_state_dict, encoder_state_dict, load_checkpoint,
                                         read_checkpoint, save_checkpoint)
    from mae_backbone.models import create_model

    ckpt = read_checkpoint(args.src)
    sd, source = convert_state_dict(ckpt, args.source)
    if args.encoder_only:
        sd = encoder_state_dict(sd)
    meta = {"converted_from": source, "encoder_only": args.encoder_only}
    spec = ckpt.get("meta", {}).get("model_spec") if isinstance(ckpt.get("meta"), dict) else None
    if spec is not None:  # keep what rebuilds the architecture (head counts cannot be read from weights)
        meta["model_spec"] = spec
    save_checkpoint({"model": sd, "meta": meta}, args.dst)
    print(f"converted {len(sd)} tensors from the {source} layout -> {args.dst}")
    if args.check:
        # an exact match: every tensor of the preset present, none left over (a decoder, a head)
        print(load_checkpoint(create_model(args.check), args.dst, strict=True, allowed_missing=(), allowed_unexpected=()))


if __name__ == "__main__":
    main()

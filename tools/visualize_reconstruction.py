"""Reconstruction grid for any MAE checkpoint (ours, official, mmpretrain or HF layout).

python tools/visualize_reconstruction.py CKPT IMAGE [IMAGE ...] --mask-ratio 0.75 --out recon.png
"""
import argparse



def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("images", nargs="+")
    p.add_argument("--arch", help="preset (default: inferred from the checkpoint)")
    p.add_argument("--img-size", type=int, help="default: the checkpoint's pretraining size")
    p.add_argument("--mask-ratio", type=float, default=0.75)
    p.add_argument("--norm-pix-loss", choices=["auto", "on", "off"], default="auto",
                   help="whether the model predicts per-patch normalised pixels (auto: from our checkpoints' "
                        "config, else off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default="auto", choices=["auto", "native", "official", "timm", "mmpretrain", "hf"])
    p.add_argument("--out", default="recon.png")
    args = p.parse_args()

    import torch
    from mae_backbone.checkpoint import read_checkpoint
    from mae_backbone.inference import build_mae_from_checkpoint, load_images
    from mae_backbone.visualize import reconstruction_grid

    ckpt = read_checkpoint(args.checkpoint)
    norm_pix = {"on": True, "off": False}.get(args.norm_pix_loss)
    model, report, (mean, std) = build_mae_from_checkpoint(ckpt, arch=args.arch, img_size=args.img_size,
                                              norm_pix_loss=norm_pix, source=args.source)
    print(report)
    imgs = load_images(args.images, model.img_size[0], model.in_chans, mean, std)
    gh, gw = model.grid
    noise = torch.rand(imgs.shape[0], gh * gw, generator=torch.Generator().manual_seed(args.seed))
    reconstruction_grid(model, imgs, args.mask_ratio, noise, mean, std).save(args.out)
    print(f"wrote {args.out} (rows: masked input | reconstruction + visible | original)")


if __name__ == "__main__":
    main()

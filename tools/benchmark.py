"""Benchmarks. Every figure is a median over repeats after warm-up, measured in one run.

python tools/benchmark.py pretrain --arch mae_vit_base_patch16 --batch 8 --dtypes fp32 bf16
"""
import argparse
import os.path as osp
import platform
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), ".."))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pre = sub.add_parser("pretrain", help="MAE pretraining step throughput (fwd + bwd + AdamW)")
    pre.add_argument("--arch", default="mae_vit_base_patch16")
    pre.add_argument("--batch", type=int, default=8)
    pre.add_argument("--img-size", type=int, default=224)
    pre.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    pre.add_argument("--warmup", type=int, default=2)
    pre.add_argument("--repeats", type=int, default=5)
    pre.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    pre.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    args = p.parse_args()

    import torch
    from mae_backbone.benchmark import matmul_peak, pretrain_step_throughput

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {args.device}")
    print("| model | batch | dtype | step (s) | img/s | matmul peak (TFLOP/s) |")
    print("|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        r = pretrain_step_throughput(args.arch, args.batch, dtype, args.img_size, warmup=args.warmup,
                                     repeats=args.repeats, device=args.device)
        peak = matmul_peak(dtype, device=args.device)
        print(f"| {r['arch']} | {r['batch']} | {dtype} | {r['step_s']:.3f} | {r['img_per_s']:.2f} | {peak / 1e12:.3f} |")


if __name__ == "__main__":
    main()

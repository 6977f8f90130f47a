"""Benchmarks (run from the repository root). Every figure is a median over repeats after warm-up, in one run.

python -m benchmarks --quick      # every part, small settings (a few minutes on 2 CPU cores): the ratio table
python -m benchmarks suite --write docs/benchmarks.md   # every part, full settings, into the docs
python -m benchmarks pretrain --impls ours ours-compiled hf mmpretrain --dtypes fp32 bf16   # ViT-B, batch 8
python -m benchmarks asymmetric --arch mae_vit_large_patch16     # paper Table 2: w/ [M] vs MAE dec 8 / 1
python -m benchmarks detection --variants fpn vitdet vitdet-global vitdet-ckpt   # Mask R-CNN ViT-B, 1024x1024
python -m benchmarks segmentation      # UperNet ViT-B 512x512: ours vs mmseg's own MAE backbone
python -m benchmarks segmentation --part backbone   # the backbone alone, batch 1
"""
import argparse
import platform
import sys


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", dest="quick_all", action="store_true", help="run the whole suite with small settings "
                   "and print the ratio table (the same as `suite --quick`)")
    sub = p.add_subparsers(dest="cmd")
    suite = sub.add_parser("suite", help="every part of the benchmark in one run; prints the ratio table")
    suite.add_argument("--quick", action="store_true", help="small settings (< ~5 min on 2 CPU cores)")
    suite.add_argument("--write", metavar="MD", help="replace the suite section of this markdown file "
                       "(between <!-- suite:begin --> and <!-- suite:end -->) with the results")
    suite.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    pre = sub.add_parser("pretrain", help="MAE pretraining step throughput (fwd + bwd + AdamW)")
    pre.add_argument("--arch", default="mae_vit_base_patch16")
    pre.add_argument("--batch", type=int, default=8)
    pre.add_argument("--img-size", type=int, default=224)
    pre.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    pre.add_argument("--warmup", type=int, default=2)
    pre.add_argument("--repeats", type=int, default=5)
    pre.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    pre.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    pre.add_argument("--impls", nargs="+", default=["ours"], choices=["ours", "ours-compiled", "hf", "mmpretrain"],
                     help="ours, ours under torch.compile, HF transformers' ViTMAEForPreTraining and mmpretrain's MAE of "
                     "the same shape, interleaved in one run")
    pre.add_argument("--adamw", nargs="+", default=["fused"], choices=["fused", "unfused"],
                     help="fused: torch's fused AdamW kernel (the optimizer constructor's default); unfused: torch's "
                          "default for the device; both: the lever measured in one run")
    asym = sub.add_parser("asymmetric", help="paper Table 2: step time and FLOPs of the encoder with mask tokens vs "
                                             "MAE (decoder depth 8 and 1), as ratios measured in one run")
    asym.add_argument("--arch", default="mae_vit_large_patch16")
    asym.add_argument("--batch", type=int, default=4)
    asym.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    asym.add_argument("--warmup", type=int, default=1)
    asym.add_argument("--repeats", type=int, default=5)
    asym.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    asym.add_argument("--unfused-adamw", action="store_true", help="torch's default AdamW instead of the fused kernel")
    det = sub.add_parser("detection", help="Mask R-CNN ViT-B training iteration at 1024x1024 (time, peak memory); "
                                            "each variant in its own process so peak memory is its own")
    det.add_argument("--variants", nargs="+", default=["fpn", "vitdet"],
                     choices=["fpn", "fpn-ckpt", "vitdet", "vitdet-ckpt", "vitdet-global"])
    det.add_argument("--batch", type=int, default=1)
    det.add_argument("--dtype", default="bf16", choices=["fp32", "bf16"],
                     help="bf16: backbone + ViTDet neck under bf16 autocast, as the configs (heads fp32)")
    det.add_argument("--warmup", type=int, default=1)
    det.add_argument("--repeats", type=int, default=3)
    det.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    seg = sub.add_parser("segmentation", help="UperNet ViT-B training iteration at 512x512: ours vs mmseg's MAE "
                                               "backbone, each in its own process")
    seg.add_argument("--variants", nargs="+", default=["ours", "ours-stock-args", "mmseg-mae"],
                     choices=["ours", "ours-stock-args", "mmseg-mae"])
    seg.add_argument("--part", default="iteration", choices=["iteration", "backbone"],
                     help="iteration: full UperNet train_step (needs batch >= 2: its pyramid pooling normalises a "
                          "1x1 map with BatchNorm); backbone: backbone + pyramid fwd + bwd + AdamW, batch 1 by default")
    seg.add_argument("--batch", type=int, help="default 2 for --part iteration, 1 for --part backbone")
    seg.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    seg.add_argument("--warmup", type=int, default=1)
    seg.add_argument("--repeats", type=int, default=5)
    seg.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    args = p.parse_args()
    from benchmarks.peers import enable_mmpretrain_peer
    enable_mmpretrain_peer()  # before anything imports mmdet (which imports mmpretrain when it can)
    if args.quick_all and args.cmd not in (None, "suite"):
        p.error(f"--quick runs the whole suite; it cannot be combined with `{args.cmd}`")
    if args.quick_all or args.cmd == "suite":
        return run_suite(args)
    if args.cmd is None:
        p.error("give a sub-command or --quick")
    if args.cmd == "detection":
        return detection(args)
    if args.cmd == "segmentation":
        return segmentation(args)
    if args.cmd == "asymmetric":
        return asymmetric(args)

    import torch
    from benchmarks.pretrain import compare_pretrain_steps
    from benchmarks.measure import matmul_peak

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {args.device}; implementations timed interleaved, median of {args.repeats} after {args.warmup} "
          "warm-up")
    print("| implementation | model | batch | dtype | AdamW | step (s) | min - max (s) | img/s | TFLOP/s | "
          "matmul peak (TFLOP/s) | utilisation |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dtype in args.dtypes:
        peak = matmul_peak(dtype, device=args.device)
        for adamw in args.adamw:
            rows = compare_pretrain_steps(args.impls, args.arch, args.batch, dtype, args.img_size, warmup=args.warmup,
                                          repeats=args.repeats, device=args.device, fused_adamw=adamw == "fused",
                                          peak=peak)
            for r in rows:
                print(f"| {r['impl']} | {r['arch']} | {r['batch']} | {r['dtype']} | {adamw} | {r['step_s']:.3f} | "
                      f"{r['min_s']:.3f} - {r['max_s']:.3f} | {r['img_per_s']:.2f} | {r['tflop_per_s']:.3f} | "
                      f"{peak / 1e12:.3f} | {r['utilisation']:.0%} |")
            sys.stdout.flush()


def run_suite(args):
    import torch
    from benchmarks.suite import run_suite as run, to_markdown, write_section

    quick = args.quick_all or getattr(args, "quick", False)
    device = getattr(args, "device", "cuda" if torch.cuda.is_available() else "cpu")
    command = "python -m benchmarks " + ("--quick" if quick else "suite")
    result = run("quick" if quick else "full", device=device, log=lambda m: print(m, flush=True))
    md = to_markdown(result, command)
    print("\n" + md)
    if getattr(args, "write", None):
        write_section(args.write, md)
        print(f"wrote the suite section of {args.write}")


def asymmetric(args):
    import torch
    from benchmarks.asymmetric import asymmetric_speedup

    from benchmarks.measure import ran_precision
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {args.device}; {args.arch}, batch {args.batch}, {ran_precision(args.dtype, args.device)}, mask 0.75, "
          f"norm_pix_loss, "
          f"AdamW {'torch default (unfused)' if args.unfused_adamw else 'fused'}, "
          f"median of {args.repeats} after {args.warmup} warm-up")
    print("| variant | step (s) | min - max (s) | GFLOP / step (fwd + bwd) | speedup | FLOP bound | speedup / bound |")
    print("|---|---|---|---|---|---|---|")
    for r in asymmetric_speedup(args.arch, args.batch, args.dtype, warmup=args.warmup, repeats=args.repeats,
                                device=args.device, fused_adamw=not args.unfused_adamw):
        print(f"| {r['label']} | {r['step_s']:.2f} | {r['min_s']:.2f} - {r['max_s']:.2f} | {r['flops'] / 1e9:.0f} | "
              f"{r['speedup']:.2f}x | {r['flop_ratio']:.2f}x | {r['efficiency']:.0%} |")


def _child_rows(args, target: str, title: str, kwargs_of) -> None:
    """Each variant in its own process (:func:`benchmarks.harness.run_in_child`: its peak memory is its own); a
    table of the results."""
    import torch
    from benchmarks.harness import run_in_child
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {args.device}; {title}, batch {args.batch}, median of {args.repeats} after {args.warmup} warm-up")
    mem = "peak GPU memory (MiB)" if args.device == "cuda" else "peak RSS (MiB) | RSS growth in training (MiB)"
    print(f"| variant | s / iter | min - max (s) | {mem} |")
    print("|---|---|---|---|" + ("" if args.device == "cuda" else "---|"))
    common = dict(batch=args.batch, dtype=args.dtype, warmup=args.warmup, repeats=args.repeats, device=args.device)
    for v in args.variants:
        try:
            r = run_in_child(target, dict(common, **kwargs_of(v)))
        except RuntimeError as err:
            sys.exit(f"variant {v} failed: {err}")
        spread = f"{r['min_s']:.2f} - {r['max_s']:.2f}"
        if args.device == "cuda":
            print(f"| {v} | {r['step_s']:.2f} | {spread} | {r['peak_mem_mib']:.0f} |")
        else:
            print(f"| {v} | {r['step_s']:.2f} | {spread} | {r['peak_rss_mib']:.0f} | {r['train_mem_mib']:.0f} |")
        sys.stdout.flush()


def detection(args):
    from benchmarks.measure import ran_precision
    _child_rows(args, "benchmarks.detection:detection_iteration",
                f"Mask R-CNN + MAE ViT-B at 1024x1024, backbone/neck {ran_precision(args.dtype, args.device)} (heads fp32)",
                lambda v: dict(variant=v.split("-")[0], grad_checkpointing=v.endswith("-ckpt"),
                               all_global=v.endswith("-global")))


def segmentation(args):
    if args.batch is None:
        args.batch = 2 if args.part == "iteration" else 1
    what = ("UperNet + ViT-B training iteration" if args.part == "iteration"
            else "ViT-B segmentation backbone + pyramid fwd + bwd + AdamW")
    from benchmarks.measure import ran_precision
    target = ("benchmarks.segmentation:segmentation_iteration" if args.part == "iteration"
              else "benchmarks.segmentation:segmentation_backbone_step")
    _child_rows(args, target, f"{what} at 512x512, {ran_precision(args.dtype, args.device)}", lambda v: dict(variant=v))


if __name__ == "__main__":
    main()

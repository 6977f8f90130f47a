"""One part of the GPU check (benchmarks/gpu_check.sh runs every part, each time-capped, in its own process).

    python -m benchmarks.gpu_check PART --out DIR [--small]   (from the repository root)

Parts: ``env`` (GPU, versions, what bf16 means here), ``pretrain-b`` / ``pretrain-l`` (MAE ViT-B batch 256 / ViT-L
batch 128 training step in bf16: ours vs HF ViTMAE, eager, and ours under torch.compile; images/s and utilisation
of the bf16 matmul peak measured in the same run), ``asymmetric`` (paper Table 2 on ViT-L), ``vitdet`` (the ViTDet
ViT-B backbone at 1024², built from VisionTransformer directly: windowed vs all-global, time and peak memory),
``train`` (tools/train.py on the demo config: --amp bf16, --resume, --amp fp16; needs mmengine and what its runner
imports: opencv, rich). Each part appends its markdown sections to DIR/gpu_check.md as soon as each is measured.
``--small``: tiny shapes, for checking the script itself on a CPU.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import platform
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

import torch

PARTS = ("env", "pretrain-b", "pretrain-l", "asymmetric", "vitdet", "train")


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86_64'})"


def part_env(args, emit) -> None:
    from mae_backbone.precision import resolve_precision
    lines = [f"- device: {gpu_name()}"]
    if torch.cuda.is_available():
        cc = ".".join(map(str, torch.cuda.get_device_capability(0)))
        lines[0] += f", compute capability {cc}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
    lines.append(f"- torch {torch.__version__} (CUDA {torch.version.cuda}), Python {platform.python_version()}")
    for pkg in ("timm", "transformers", "mmengine", "mmcv"):
        try:
            lines.append(f"- {pkg} {__import__(pkg).__version__}")
        except ImportError:
            lines.append(f"- {pkg}: not installed")
    p = resolve_precision("bf16", device())
    lines.append(f"- bf16 here means: {p.name}" + (f" ({p.reason})" if p.reason else ""))
    emit("", lines)


def part_pretrain(args, emit, arch: str, batch: int) -> None:
    """Two sections, each written when measured: ours vs HF eager, then ours eager vs ours compiled (a slow or
    failing torch.compile cannot take the first with it)."""
    import gc
    import importlib.util

    from benchmarks.pretrain import compare_pretrain_steps
    from benchmarks.measure import matmul_peak
    if args.small:
        arch, batch = "mae_vit_tiny_patch16", 2
    n = 8192 if device() == "cuda" else 512
    peak = matmul_peak("bf16", n=n, device=device())
    head = (f"{arch}, batch {batch}, mask 0.75, norm_pix_loss, fused AdamW; bf16 matmul peak {peak / 1e12:.0f} "
            f"TFLOP/s ({n}³, same run)")
    peers = ["hf"] if importlib.util.find_spec("transformers") else []
    failures = []
    for title, impls in (("eager: ours vs HF ViTMAE", ["ours"] + peers), ("torch.compile", ["ours", "ours-compiled"])):
        t0 = time.perf_counter()
        try:
            rows = compare_pretrain_steps(impls, arch, batch, "bf16", warmup=2, repeats=1 if args.small else 5,
                                          device=device(), peak=peak)
        except Exception as e:  # noqa: BLE001  (torch.compile failing is a finding to report, then a failed part)
            emit(f"{title}", [head, "", f"FAILED: {type(e).__name__}: {str(e)[:500]}"])
            failures.append(title)
            continue
        finally:
            gc.collect()
            if device() == "cuda":
                torch.cuda.empty_cache()
        lines = [f"{head}; {rows[0]['dtype']} autocast; {time.perf_counter() - t0:.0f} s", "",
                 "| implementation | step (s) | img/s | TFLOP/s | utilisation (MFU) | ours (eager) / this |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['impl']} | {r['step_s']:.4f} | {r['img_per_s']:.1f} | {r['tflop_per_s']:.1f} | "
                         f"{r['utilisation']:.0%} | {r['ours_over_this']:.2f}x |")
        emit(title, lines)
    if failures:
        sys.exit(f"failed: {', '.join(failures)}")


def part_asymmetric(args, emit) -> None:
    from benchmarks.asymmetric import asymmetric_speedup
    arch, batch = ("mae_vit_tiny_patch16", 2) if args.small else ("mae_vit_large_patch16", 128)
    rows = asymmetric_speedup(arch, batch, "bf16", warmup=1, repeats=5 if not args.small else 1, device=device())
    lines = [f"{arch}, batch {batch}, {rows[0]['dtype']}", "",
             "| variant | step (s) | speedup | FLOP bound | speedup / bound |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['step_s']:.4f} | {r['speedup']:.2f}x | {r['flop_ratio']:.2f}x | "
                     f"{r['efficiency']:.0%} |")
    emit("", lines)


def vitdet_backbone(windowed: bool, size: int, dev: str, width: int = 768) -> torch.nn.Module:
    """The ViT-B of configs/mask_rcnn/_base_/mask-rcnn_mae-vit-b_vitdet.py as a plain VisionTransformer: 14x14
    windows but blocks 2, 5, 8, 11 global, decomposed relative positions, no cls token, learnable positions
    (``width`` < 768: the same layout, narrower, for --small)."""
    from mae_backbone.models import VisionTransformer
    with torch.device(dev):
        return VisionTransformer(img_size=224, embed_dim=width, num_heads=width // 64, use_cls_token=False,
                                 learnable_pos_embed=True, drop_path_rate=0.1, window_size=14 if windowed else 0,
                                 global_block_indexes=(2, 5, 8, 11) if windowed else (), rel_pos="decomposed",
                                 rel_pos_img_size=size).train()


def part_vitdet(args, emit) -> None:
    from benchmarks.measure import count_flops, interleaved_times
    from mae_backbone.precision import resolve_precision
    size, batch, width = (224, 1, 64) if args.small else (1024, 2, 768)
    prec = resolve_precision("bf16", device(), loss_scaling=False)
    x = torch.randn(batch, 3, size, size, device=device())
    rows = []
    for name, windowed in (("windowed (ViTDet)", True), ("all global", False)):
        model = vitdet_backbone(windowed, size, device(), width)

        def step():
            model.zero_grad(set_to_none=True)
            with prec.autocast():
                loss = model.forward_intermediates(x, [11])[0].float().mean()
            loss.backward()
        if device() == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t = interleaved_times({name: step}, warmup=2, repeats=5 if not args.small else 1)[name]
        mem = torch.cuda.max_memory_allocated() / 2**30 if device() == "cuda" else float("nan")
        meta = vitdet_backbone(windowed, size, "meta", width)
        xm = torch.empty(batch, 3, size, size, device="meta")
        flops = count_flops(lambda: meta.forward_intermediates(xm, [11])[0].float().mean().backward())
        rows.append((name, sorted(t)[len(t) // 2], mem, flops))
        del model
    glob = rows[1]
    model_name = "ViT-B" if width == 768 else f"ViT-B layout, {width}-d"
    lines = [f"{model_name}, {size}², batch {batch}, fwd + bwd, {prec.name} autocast", "",
             "| variant | fwd + bwd (s) | TFLOP | speedup vs all-global | FLOP bound | peak GPU memory (GiB) |",
             "|---|---|---|---|---|---|"]
    for name, s, mem, flops in rows:
        lines.append(f"| {name} | {s:.4f} | {flops / 1e12:.2f} | {glob[1] / s:.2f}x | {glob[3] / flops:.2f}x | {mem:.1f} |")
    emit("", lines)


def _photos(out: str) -> str:
    """The bundled sample photos as an image folder; synthetic images where their packages are missing."""
    import numpy as np
    from PIL import Image

    folder = osp.join(out, "photos")
    try:
        from mae_backbone.data import export_sample_photos
        export_sample_photos(folder)
    except Exception as e:  # noqa: BLE001  (a smoke of the GPU path needs images, not these ones)
        print(f"sample photos unavailable ({e}): synthetic images instead", flush=True)
        rng = np.random.default_rng(0)
        os.makedirs(osp.join(folder, "synthetic"), exist_ok=True)
        for i in range(16):
            Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(
                osp.join(folder, "synthetic", f"{i}.jpg"))
    return folder


def part_train(args, emit) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    probe = subprocess.run([sys.executable, "-c", "import mmengine.runner"], env=env, capture_output=True, text=True)
    if probe.returncode:
        why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        emit("", [f"skipped: `import mmengine.runner` fails here ({why}); carry mmengine and what it needs as wheels "
                  f"(benchmarks/gpu_check.sh WHEELS=...)"])
        return
    photos = _photos(args.out)
    cfg = osp.join(args.out, "smoke_cfg.py")
    with open(cfg, "w") as f:  # the demo config on the photos, text logs only (no tensorboard needed)
        f.write(f"_base_ = [{osp.join(ROOT, 'configs', 'mae', 'mae_vit-demo-p8_1xb32-40e_photos.py')!r}]\n"
                f"train_dataloader = dict(num_workers=0, dataset=dict(root={photos!r}))\n"
                f"visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])\n")
    runs = [("--amp bf16, 2 epochs", ["--amp", "bf16"], 2), ("--resume to 3 epochs", ["--amp", "bf16", "--resume"], 3),
            ("--amp fp16, 1 epoch (new work dir)", ["--amp", "fp16"], 1)]
    lines = ["| run | exit | seconds | last loss | precision log |", "|---|---|---|---|---|"]
    failed = 0
    for i, (label, flags, epochs) in enumerate(runs):
        if "fp16" in flags and device() != "cuda":
            lines.append(f"| {label} | skipped: fp16 loss scaling needs CUDA | | | |")
            continue
        wd = osp.join(args.out, "train" if i < 2 else "train_fp16")
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, osp.join(ROOT, "tools", "train.py"), cfg, "--work-dir", wd, *flags,
                            "--cfg-options", f"train_cfg.max_epochs={epochs}"], capture_output=True, text=True, env=env)
        log = p.stdout + p.stderr
        with open(osp.join(args.out, f"train_{i}.log"), "w") as f:
            f.write(log)
        losses = [ln.split("loss: ")[-1].split()[0] for ln in log.splitlines() if " loss: " in ln]
        prec = [ln.split("precision: ")[-1] for ln in log.splitlines() if "precision: " in ln]
        lines.append(f"| {label} | {p.returncode} | {time.perf_counter() - t0:.0f} | {losses[-1] if losses else '-'} | "
                     f"{prec[-1] if prec else '-'} |")
        failed += p.returncode != 0
    emit("", lines)
    if failed:
        sys.exit(f"{failed} training run(s) failed: see train_*.log")


TITLES = {"env": "machine", "pretrain-b": "MAE ViT-B pretraining step", "pretrain-l": "MAE ViT-L pretraining step",
          "asymmetric": "asymmetric encoder-decoder (paper Table 2)", "vitdet": "ViTDet backbone at 1024²",
          "train": "training smoke through tools/train.py"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=PARTS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--small", action="store_true", help="tiny shapes: check the script itself (CPU)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()

    def emit(subtitle: str, lines: list) -> None:  # a section is on disk as soon as it is measured
        title = TITLES[args.part] + (f": {subtitle}" if subtitle else "")
        text = "\n".join([f"### {title} ({gpu_name()}, {time.perf_counter() - t0:.0f} s)", "", *lines, "", ""])
        print(text, flush=True)
        with open(osp.join(args.out, "gpu_check.md"), "a") as f:
            f.write(text)
    fns = {"env": part_env, "pretrain-b": lambda a, e: part_pretrain(a, e, "mae_vit_base_patch16", 256),
           "pretrain-l": lambda a, e: part_pretrain(a, e, "mae_vit_large_patch16", 128), "asymmetric": part_asymmetric,
           "vitdet": part_vitdet, "train": part_train}
    fns[args.part](args, emit)


if __name__ == "__main__":
    main()

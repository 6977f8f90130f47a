"""The benchmark suite: every figure a ratio measured in the same run, against a named reference.

``python -m benchmarks --quick`` (under ~5 minutes on a 2-core CPU) or ``python -m benchmarks suite`` (the full
settings; ``--write docs/benchmarks.md`` replaces the suite section there). Speed is never asserted in tests.
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
import platform
import time
from typing import Callable, Dict

import torch

# settings: pretraining step (ViT-B), asymmetric (ViT-L), detection backbone (1024²), segmentation backbone (512²)
SETTINGS = {
    "quick": dict(pre_compile=False, pre_batch=8, pre_warmup=1, pre_repeats=3,
                  asym_batch=4, asym_warmup=1, asym_repeats=1,
                  det_variants=("vitdet", "vitdet-global"), det_repeats=0, seg_warmup=1, seg_repeats=2),
    "full": dict(pre_compile=True, pre_batch=8, pre_warmup=2, pre_repeats=5,
                 asym_batch=16, asym_warmup=1, asym_repeats=5,
                 det_variants=("vitdet", "vitdet-global", "vitdet-ckpt"), det_repeats=3, seg_warmup=1, seg_repeats=5),
}

TARGETS = {  # name -> (threshold, direction): measured value must be >= (or <=) the threshold
    "fp32 step vs fastest peer": (1.0, ">="),
    "fp32 utilisation": (0.90, ">="),
    "bf16 step vs fastest peer": (1.3, ">="),
    "bf16 utilisation": (0.80, ">="),
    "fp32 step vs fastest peer, ours compiled": (1.0, ">="),
    "fp32 utilisation, ours compiled": (0.90, ">="),
    "bf16 step vs fastest peer, ours compiled": (1.3, ">="),
    "bf16 utilisation, ours compiled": (0.80, ">="),
    "asymmetric dec 8: speedup / FLOP bound": (0.90, ">="),
    "asymmetric dec 1: speedup / FLOP bound": (0.90, ">="),
    "windowed vs all-global detection backbone": (3.0, ">="),
    "windowed / all-global activation memory": (1 / 3, "<="),
    "segmentation backbone vs mmseg MAE": (1.5, ">="),
}


def _fmt_ratio(x: float) -> str:
    return f"{x:.2f}x"


def _fmt_pct(x: float) -> str:
    return f"{x:.0%}"


PARTS = ("pretrain", "asymmetric", "detection", "segmentation")


class _Part:
    """Collects one part's targets (each measured value against its goal) and its markdown table."""

    def __init__(self, log: Callable[[str], None]):
        self.log, self.targets, self.lines = log, [], []

    def target(self, name: str, value: float, fmt: Callable[[float], str], detail: str):
        thr, op = TARGETS[name]
        hit = value >= thr if op == ">=" else value <= thr
        self.targets.append(dict(name=name, value=value, text=fmt(value), goal=f"{op} {fmt(thr)}", hit=hit,
                                 detail=detail))
        self.log(f"  {name}: {fmt(value)} (target {op} {fmt(thr)}) {'hit' if hit else 'missed'}; {detail}")


def run_part(part: str, mode: str = "quick", device: str = "cpu", log: Callable[[str], None] = print,
             peers=("hf", "mmpretrain")) -> Dict:
    """Run one part of the suite in this process; returns ``dict(part, targets, table, missing_peers)``."""
    s = SETTINGS[mode]
    out = _Part(log)
    missing = []
    if part == "pretrain":  # 1 + 3: ours vs peers, utilisation against the matmul peak measured in the same run
        from benchmarks.peers import enable_mmpretrain_peer
        from benchmarks.pretrain import compare_pretrain_steps
        from benchmarks.measure import matmul_peak
        from mae_backbone.precision import resolve_precision

        installed = dict(hf=importlib.util.find_spec("transformers") is not None,
                         mmpretrain=enable_mmpretrain_peer())
        available = [p for p in peers if installed[p]]
        missing = [p for p in peers if p not in available]
        out.lines = ["| dtype | implementation | step (s) | min - max (s) | img/s | TFLOP/s | matmul peak (TFLOP/s) | "
                     "utilisation | ours (eager) / this |", "|---|---|---|---|---|---|---|---|---|"]
        for dtype in ("fp32", "bf16"):
            prec = resolve_precision(dtype, device, loss_scaling=False)
            if prec.name != dtype:  # emulated bf16 would time torch's emulation, and fp32 is measured already
                log(f"pretraining step, {dtype}: skipped: {prec.reason}")
                out.lines.append(f"| {dtype} | skipped: {prec.reason} | | | | | | | |")
                continue
            log(f"pretraining step, ViT-B MAE, batch {s['pre_batch']}, {dtype}: {', '.join(['ours'] + available)}")
            peak = matmul_peak(dtype, device=device)
            ours_impls = ["ours", "ours-compiled"] if s["pre_compile"] else ["ours"]
            if s["pre_compile"]:  # compile before timing (the first call compiles: ~1 min on 2 cores, not timed)
                log("  (torch.compile of ours: the first step compiles, ~1 min)")
            rows = compare_pretrain_steps(ours_impls + available, batch=s["pre_batch"], dtype=dtype,
                                          warmup=s["pre_warmup"], repeats=s["pre_repeats"], device=device)
            peak = max(peak, matmul_peak(dtype, device=device))  # the best of before and after the steps
            for r in rows:
                r["utilisation"] = r["tflop_per_s"] * 1e12 / peak
                out.lines.append(f"| {dtype} | {r['impl']} | {r['step_s']:.3f} | {r['min_s']:.3f} - {r['max_s']:.3f} | "
                                 f"{r['img_per_s']:.2f} | {r['tflop_per_s']:.3f} | {peak / 1e12:.3f} | "
                                 f"{r['utilisation']:.0%} | {r['ours_over_this']:.2f}x |")
            peer_rows = [r for r in rows if not r["impl"].startswith("ours")]
            for ours, suffix in zip(rows, ("", ", ours compiled")):
                if not ours["impl"].startswith("ours"):
                    break
                if peer_rows:
                    fastest = max(peer_rows, key=lambda r: r["img_per_s"])
                    out.target(f"{dtype} step vs fastest peer{suffix}", ours["img_per_s"] / fastest["img_per_s"],
                               _fmt_ratio, f"{ours['img_per_s']:.2f} vs {fastest['img_per_s']:.2f} img/s "
                               f"({fastest['impl']}, eager)")
                out.target(f"{dtype} utilisation{suffix}", ours["utilisation"], _fmt_pct,
                           f"{ours['tflop_per_s']:.3f} of {peak / 1e12:.3f} TFLOP/s")
    elif part == "asymmetric":  # 2: paper Table 2, ViT-L
        from benchmarks.asymmetric import asymmetric_speedup

        log(f"asymmetric encoder-decoder, ViT-L, batch {s['asym_batch']}, fp32")
        rows = asymmetric_speedup("mae_vit_large_patch16", s["asym_batch"], "fp32", warmup=s["asym_warmup"],
                                  repeats=s["asym_repeats"], device=device)
        out.lines = ["| variant | step (s) | GFLOP / step | speedup | FLOP bound | speedup / bound |",
                     "|---|---|---|---|---|---|"]
        for r in rows:
            out.lines.append(f"| {r['label']} | {r['step_s']:.2f} | {r['flops'] / 1e9:.0f} | {r['speedup']:.2f}x | "
                             f"{r['flop_ratio']:.2f}x | {r['efficiency']:.0%} |")
        for r, depth in ((rows[1], 8), (rows[2], 1)):
            out.target(f"asymmetric dec {depth}: speedup / FLOP bound", r["efficiency"], _fmt_pct,
                       f"{r['speedup']:.2f}x of a {r['flop_ratio']:.2f}x bound "
                       f"(paper, TPU: {'2.8x' if depth == 8 else '3.7x'})")
    elif part == "detection":  # 4a: ViTDet backbone at 1024², windowed vs all-global (vs checkpointing)
        from benchmarks.detection import detection_backbones

        from benchmarks.measure import ran_precision
        log(f"detection backbone (ViTDet MAE ViT-B), 1024², {ran_precision('bf16', device)} autocast: "
            + ", ".join(s["det_variants"]))
        rows = detection_backbones(s["det_variants"], warmup=0, repeats=s["det_repeats"], device=device)
        out.lines = ["| variant | fwd + bwd (s) | TFLOP | speedup vs all-global | FLOP bound | activations (MiB) | "
                     "fwd + bwd peak (MiB) | activations vs all-global |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.lines.append(f"| {r['variant']} | {r['step_s']:.2f} | {r['flops'] / 1e12:.2f} | "
                             f"{r['speedup_vs_global']:.2f}x | {r['flop_ratio_vs_global']:.2f}x | "
                             f"{r['activation_mib']:.0f} | {r['peak_mib']:.0f} | {r['activation_vs_global']:.2f} |")
        win, glob = rows[0], next(r for r in rows if r["variant"] == "vitdet-global")
        out.target("windowed vs all-global detection backbone", win["speedup_vs_global"], _fmt_ratio,
                   f"FLOP bound {win['flop_ratio_vs_global']:.2f}x")
        ckpt = next((r for r in rows if r["variant"] == "vitdet-ckpt"), None)
        out.target("windowed / all-global activation memory", win["activation_vs_global"], lambda x: f"{x:.2f}",
                   f"{win['activation_mib']:.0f} vs {glob['activation_mib']:.0f} MiB"
                   + (f"; windowed + checkpointing {ckpt['activation_vs_global']:.2f}" if ckpt else ""))
    elif part == "segmentation":  # 4b: segmentation backbone at 512², ours vs mmseg's MAE
        from benchmarks.segmentation import compare_segmentation_backbones

        log("segmentation backbone + pyramid, 512², batch 1, fp32: ours vs mmseg-mae")
        rows = compare_segmentation_backbones(("ours", "mmseg-mae"), warmup=s["seg_warmup"],
                                              repeats=s["seg_repeats"], device=device)
        out.lines = ["| variant | step (s) | min - max (s) | speedup vs mmseg MAE |", "|---|---|---|---|"]
        for r in rows:
            out.lines.append(f"| {r['variant']} | {r['step_s']:.2f} | {r['min_s']:.2f} - {r['max_s']:.2f} | "
                             f"{r['speedup_vs_mmseg']:.2f}x |")
        out.target("segmentation backbone vs mmseg MAE", rows[0]["speedup_vs_mmseg"], _fmt_ratio,
                   f"{rows[0]['step_s']:.2f} vs {rows[1]['step_s']:.2f} s")
    else:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    return dict(part=part, targets=out.targets, table="\n".join(out.lines), missing_peers=missing)


def run_suite(mode: str = "quick", device: str = "cpu", log: Callable[[str], None] = print,
              parts=PARTS) -> Dict:
    """Every part, each in a fresh child process (:func:`benchmarks.harness.run_in_child`); returns
    ``dict(targets, sections, missing_peers, seconds, machine)``."""
    from .harness import run_in_child

    def progress(line: str) -> None:  # progress lines pass through; library warnings stay in the error report
        if line.startswith(("pretraining step", "asymmetric encoder", "detection backbone",
                            "segmentation backbone")) or any(line.startswith(f"  {t}:") for t in TARGETS):
            log(line)
    t0 = time.perf_counter()
    results = []
    for part in parts:
        t_part = time.perf_counter()
        results.append(run_in_child("benchmarks.suite:run_part", dict(part=part, mode=mode, device=device),
                                    echo=progress))
        log(f"  ({part}: {time.perf_counter() - t_part:.0f} s)")
    return dict(mode=mode, targets=[t for r in results for t in r["targets"]],
                sections={r["part"]: r["table"] for r in results},
                missing_peers=sorted({p for r in results for p in r["missing_peers"]}),
                seconds=time.perf_counter() - t0, machine=machine_line(device))


def machine_line(device: str = "cpu") -> str:
    cpu = platform.processor() or platform.machine()
    if device == "cuda":
        cpu = torch.cuda.get_device_name()
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}"


def to_markdown(result: Dict, command: str) -> str:
    """The ratio table (each target: measured, hit or missed) and each part's table."""
    out = [f"Measured with `{command}` ({result['mode']} settings, {result['seconds'] / 60:.1f} min) on "
           f"{result['machine']}.", ""]
    if result["missing_peers"]:
        out += [f"Peers not installed, not measured: {', '.join(result['missing_peers'])} (`make bench`).", ""]
    out += ["| target | measured | goal | hit | detail |", "|---|---|---|---|---|"]
    out += [f"| {t['name']} | **{t['text']}** | {t['goal']} | {'yes' if t['hit'] else 'no'} | {t['detail']} |"
            for t in result["targets"]]
    out += ["| GPU figures (images/s/GPU, MFU) | pending | | | no GPU was lent to this run |"
            if "cuda" not in result["machine"] else ""]
    for name, table in result["sections"].items():
        out += ["", f"**{name}**", "", table]
    return "\n".join(out) + "\n"


def write_section(path: str, md: str, begin: str = "<!-- suite:begin -->", end: str = "<!-- suite:end -->"):
    """Replace the text between the markers in ``path`` (appended with the markers when absent); atomic."""
    text = open(path).read() if osp.exists(path) else ""
    block = f"{begin}\n{md}{end}"
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if stop >= 0:
        text = text[:start] + block + text[stop + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)

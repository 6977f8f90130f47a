"""Timing helpers: MAE pretraining step throughput and dense-matmul peak, medians over repeats."""
from __future__ import annotations

import statistics
import time
import weakref
from typing import Callable, Dict, List

import torch

from .models import create_model
from .precision import autocast, resolve_precision

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def _sync():
    """Wait for queued GPU work, only where a CUDA context exists (a CPU run never creates one)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_time(fn: Callable[[], None], warmup: int = 2, repeats: int = 5) -> List[float]:
    """Run ``fn`` ``warmup`` times, then time ``repeats`` runs; returns the sorted times (s)."""
    return interleaved_times({"fn": fn}, warmup, repeats)["fn"]


def time_stats(times: List[float]) -> Dict:
    """The fields every timing row carries: median (``step_s``), fastest, slowest, number of timings."""
    return dict(step_s=statistics.median(times), min_s=min(times), max_s=max(times), repeats=len(times))


def ran_precision(dtype: str, device: str) -> str:
    """What a ``dtype`` step runs on ``device`` (:func:`mae_backbone.precision.resolve_precision`: ``fp32`` for bf16
    where the device has no native bf16); rows report it, so an emulated or replaced precision never reads as bf16."""
    return resolve_precision(dtype, device, loss_scaling=False).name


IMPLS = ("ours", "ours-compiled", "hf", "mmpretrain")  # implementations the step benchmark can time


def hf_twin(model: torch.nn.Module, mask_ratio: float = 0.75) -> torch.nn.Module:
    """HF transformers ``ViTMAEForPreTraining`` with the shape of our MAE ``model`` (SDPA attention,
    ``norm_pix_loss`` as ours); a peer for timing, initialised by HF (weights do not matter for speed)."""
    try:
        import transformers
    except ImportError as e:
        raise ImportError("the HF peer needs transformers: pip install -e '.[bench]'") from e
    blk, dec = model.blocks[0], model.decoder_blocks[0]
    cfg = transformers.ViTMAEConfig(
        hidden_size=model.embed_dim, num_hidden_layers=len(model.blocks), num_attention_heads=blk.attn.num_heads,
        intermediate_size=blk.mlp.fc1.out_features, image_size=model.img_size[0], patch_size=model.patch_size,
        num_channels=model.in_chans, decoder_hidden_size=model.decoder_embed_dim,
        decoder_num_hidden_layers=len(model.decoder_blocks), decoder_num_attention_heads=dec.attn.num_heads,
        decoder_intermediate_size=dec.mlp.fc1.out_features, mask_ratio=mask_ratio, norm_pix_loss=model.norm_pix_loss,
        layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True, attn_implementation="sdpa")
    return transformers.ViTMAEForPreTraining(cfg)


def build_pretrain_step(arch: str = "mae_vit_base_patch16", batch: int = 8, dtype: str = "fp32",
                        img_size: int = 224, mask_ratio: float = 0.75, device: str = "cpu", seed: int = 0,
                        fused_adamw: bool = True, impl: str = "ours", **model_kwargs) -> Callable[[], None]:
    """One MAE training step (forward, backward, AdamW) on fixed random images, as a closure to time.

    ``impl``: ``ours``, ``ours-compiled`` (``torch.compile``, :func:`mae_backbone.compile.compile_module`),
    ``hf`` (HF ``ViTMAEForPreTraining`` of the same shape, :func:`hf_twin`) or ``mmpretrain``
    (mmpretrain's MAE of the same shape, ``downstream.peers.mmpretrain_twin``). ``fused_adamw``: torch's fused
    AdamW kernel (our optimizer constructor's default) for every side; False: torch's default implementation for
    the device (a per-tensor loop on CPU). ``dtype`` ``bf16``: the step under bf16 autocast."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    torch.manual_seed(seed)
    model = create_model(arch, img_size=img_size, norm_pix_loss=True, **model_kwargs)
    chans = model.in_chans  # the peers are built with our channel count
    if impl == "ours-compiled":
        from .compile import compile_module
        compile_module(model, fallback=False)  # a benchmark must not silently time eager
    elif impl != "ours":
        if model_kwargs.get("mask_token_in_encoder"):
            raise ValueError(f"the {impl} peer has no mask-token encoder")
        if impl == "hf":
            model = hf_twin(model, mask_ratio)
        else:
            from downstream.peers import mmpretrain_twin  # mm* imports live in downstream/
            model = mmpretrain_twin(model, mask_ratio)
    model = model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95),
                            weight_decay=0.05, **({"fused": True} if fused_adamw else {}))
    imgs = torch.randn(batch, chans, img_size, img_size, device=device)

    def step():
        with autocast(dtype, device):
            if impl == "hf":
                loss = model(pixel_values=imgs).loss
            elif impl == "mmpretrain":
                loss = model.loss(imgs, None)["loss"]
            else:
                loss, _, _ = model(imgs, mask_ratio=mask_ratio)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step.model = model
    return step


def pretrain_step_throughput(arch: str = "mae_vit_base_patch16", batch: int = 8, dtype: str = "fp32",
                             img_size: int = 224, mask_ratio: float = 0.75, warmup: int = 2, repeats: int = 5,
                             device: str = "cpu", seed: int = 0, fused_adamw: bool = True, impl: str = "ours",
                             flops: bool = False, **model_kwargs) -> Dict:
    """Images/s of one MAE training step (:func:`build_pretrain_step`), median of ``repeats`` after ``warmup``.

    ``flops`` adds the step's model FLOPs (:func:`pretrain_step_flops`: the same shape for every implementation)
    and the achieved ``tflop_per_s``."""
    step = build_pretrain_step(arch, batch, dtype, img_size, mask_ratio, device, seed, fused_adamw, impl,
                               **model_kwargs)
    times = median_time(step, warmup, repeats)
    out = _throughput_row(times, arch=arch, impl=impl, batch=batch, dtype=ran_precision(dtype, device),
                          img_size=img_size, mask_ratio=mask_ratio, fused_adamw=fused_adamw)
    if flops:
        out["flops"] = pretrain_step_flops(arch, batch, img_size, mask_ratio, **model_kwargs)
        out["tflop_per_s"] = out["flops"] / out["step_s"] / 1e12
    return out


def _throughput_row(times: List[float], **fields) -> Dict:
    row = dict(fields, **time_stats(times))
    row["img_per_s"] = fields["batch"] / row["step_s"]
    return row


def interleaved_times(steps: Dict[str, Callable[[], None]], warmup: int = 1, repeats: int = 5) -> Dict[str, List[float]]:
    """Time several steps in rounds (each round runs every step once, the order rotating), so drift in the
    machine's speed (shared hosts, thermal) hits every side alike; returns each step's sorted times."""
    names = list(steps)
    if repeats < 1 or not names:
        raise ValueError(f"need >= 1 step and repeats >= 1, got {len(names)} steps, repeats={repeats}")
    for _ in range(warmup):
        for n in names:
            steps[n]()
    times = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            _sync()
            t0 = time.perf_counter()
            steps[n]()
            _sync()
            times[n].append(time.perf_counter() - t0)
    return {n: sorted(t) for n, t in times.items()}


def compare_pretrain_steps(impls=IMPLS, arch: str = "mae_vit_base_patch16", batch: int = 8, dtype: str = "fp32",
                           img_size: int = 224, mask_ratio: float = 0.75, warmup: int = 1, repeats: int = 5,
                           device: str = "cpu", fused_adamw: bool = True, peak: float = None) -> List[Dict]:
    """Ours and the peers' MAE training steps of one shape, built up front and timed interleaved
    (:func:`interleaved_times`). Each row: images/s, ``ours_over_this`` (ours' images/s over this row's), model
    FLOPs and achieved TFLOP/s, and ``utilisation`` = TFLOP/s / ``peak``
    (FLOP/s, e.g. :func:`matmul_peak` measured in the same run) when given."""
    steps = {i: build_pretrain_step(arch, batch, dtype, img_size, mask_ratio, device, fused_adamw=fused_adamw, impl=i)
             for i in impls}
    flops = pretrain_step_flops(arch, batch, img_size, mask_ratio)
    times = interleaved_times(steps, warmup, repeats)
    rows = [_throughput_row(times[i], arch=arch, impl=i, batch=batch, dtype=ran_precision(dtype, device),
                            img_size=img_size, mask_ratio=mask_ratio, fused_adamw=fused_adamw, flops=flops)
            for i in impls]
    ours = next((r for r in rows if r["impl"] == "ours"), None)
    for r in rows:
        r["tflop_per_s"] = flops / r["step_s"] / 1e12
        if peak:
            r["utilisation"] = flops / r["step_s"] / peak
        if ours is not None:
            r["ours_over_this"] = ours["img_per_s"] / r["img_per_s"]
    return rows


def matmul_peak(dtype: str = "fp32", n: int = 2048, device: str = "cpu", repeats: int = 7) -> float:
    """Dense matmul FLOP/s for n x n operands: the machine's practical peak for ``dtype``. The fastest of
    ``repeats`` timings (a peak, so the best run, not the median: a slow repeat on a shared host is noise)."""
    t = DTYPES[ran_precision(dtype, device)] or torch.float32
    a, b = torch.randn(n, n, device=device, dtype=t), torch.randn(n, n, device=device, dtype=t)
    reps = 4
    times = median_time(lambda: [a @ b for _ in range(reps)], warmup=1, repeats=repeats)
    return 2 * n ** 3 * reps / times[0]


def count_flops(fn: Callable[[], None]) -> int:
    """FLOPs of the matmuls, convolutions and attention ``fn`` runs (``torch.utils.flop_counter``).

    Run it on the meta device (no compute): SDPA then takes its math path, so attention counts as two batched
    matmuls forward and four backward, the usual model-FLOP convention. What ``fn`` recomputes (activation
    checkpointing) is counted: compare such a count with the same model's without checkpointing.
    Elementwise work is not counted: the result is the bound the step time is judged by."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def pretrain_step_flops(arch: str = "mae_vit_base_patch16", batch: int = 8, img_size: int = 224,
                        mask_ratio: float = 0.75, **model_kwargs) -> int:
    """Model FLOPs of one MAE forward + backward for ``batch`` images, counted on the meta device
    (:func:`count_flops`); the same shape as :func:`pretrain_step_throughput` times, for any implementation."""
    with torch.device("meta"):
        model = create_model(arch, img_size=img_size, norm_pix_loss=True, **model_kwargs).train()
        imgs = torch.empty(batch, model.in_chans, img_size, img_size)
    return count_flops(lambda: model(imgs, mask_ratio=mask_ratio)[0].backward())


ASYMMETRIC_VARIANTS = (  # (label, mask_token_in_encoder, decoder_depth): paper Table 2's rows
    ("encoder w/ [M], decoder depth 8", True, 8),
    ("MAE, decoder depth 8", False, 8),
    ("MAE, decoder depth 1", False, 1),
)


def asymmetric_speedup(arch: str = "mae_vit_large_patch16", batch: int = 4, dtype: str = "fp32",
                       img_size: int = 224, mask_ratio: float = 0.75, warmup: int = 1, repeats: int = 5,
                       device: str = "cpu", variants=ASYMMETRIC_VARIANTS, fused_adamw: bool = True,
                       **model_kwargs) -> List[Dict]:
    """Paper Table 2 on this machine: training-step time of each variant and its FLOPs, as ratios to the first
    (the encoder that also processes mask tokens). ``flop_ratio`` is the speedup bound; ``efficiency`` =
    measured speedup / bound. One process, one model at a time."""
    rows = []
    for label, in_encoder, depth in variants:
        kw = dict(model_kwargs, mask_token_in_encoder=in_encoder, decoder_depth=depth)
        r = pretrain_step_throughput(arch, batch, dtype, img_size, mask_ratio=mask_ratio, warmup=warmup,
                                     repeats=repeats, device=device, fused_adamw=fused_adamw, flops=True, **kw)
        r.update(label=label, mask_token_in_encoder=in_encoder, decoder_depth=depth)
        rows.append(r)
    base = rows[0]
    for r in rows:
        r["speedup"] = base["step_s"] / r["step_s"]
        r["flop_ratio"] = base["flops"] / r["flops"]
        r["efficiency"] = r["speedup"] / r["flop_ratio"]
    return rows


class _LiveTensorBytes(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the bytes of every tensor storage the ops under it allocate (outputs that share no storage with
    the op's inputs), until each storage is freed."""

    def __init__(self):
        super().__init__()
        from torch.utils.weak import WeakIdKeyDictionary
        self.seen = WeakIdKeyDictionary()
        self.live = self.peak = 0

    def _free(self, nbytes: int):
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                st = t.untyped_storage()
                # views and in-place results share an input's storage: not an allocation (a parameter's
                # transpose must not count the parameter)
                if st not in self.seen and st.data_ptr() not in inputs:
                    n = st.nbytes()
                    self.seen[st] = n
                    self.live += n
                    weakref.finalize(st, self._free, n)
        self.peak = max(self.peak, self.live)
        return out


def tensor_memory(forward: Callable[[], torch.Tensor]) -> Dict[str, float]:
    """Tensor memory (MiB) of one training step: ``forward()`` returns a scalar loss, then its backward runs.

    ``activation_mib``: bytes held at the end of the forward (what is saved for backward, the activation
    memory); ``peak_mib``: the most held at once during forward + backward (adds backward intermediates,
    gradients, recomputation under activation checkpointing). Only tensors allocated by the step count
    (not parameters or inputs); exact tensor bytes on any device, CPU included, not allocator caches or RSS:
    the same on every run."""
    mode = _LiveTensorBytes()
    with mode:
        loss = forward()
        held = mode.live
        loss.backward()
    return dict(activation_mib=held / 2 ** 20, peak_mib=mode.peak / 2 ** 20)

"""Measuring: medians over repeats, interleaved timing of several sides, dense-matmul peak, FLOPs, live
tensor bytes, resident memory."""
from __future__ import annotations

import resource
import statistics
import time
import weakref
from typing import Callable, Dict, List

import torch

from mae_backbone.precision import resolve_precision

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def sync():
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
            sync()
            t0 = time.perf_counter()
            steps[n]()
            sync()
            times[n].append(time.perf_counter() - t0)
    return {n: sorted(t) for n, t in times.items()}


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


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

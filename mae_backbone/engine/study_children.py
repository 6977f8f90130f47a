"""The study's points in child processes, several at once on one machine (``run_study(jobs=N)``): scheduling,
GPUs in turn, stop signals, and the child's own entry point."""
from __future__ import annotations

import ast
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List

from mmengine.config import Config

from ..files import atomic_write_text
from .launch import apply_cfg_options


def run_in_processes(points: list, pending: List[int], rows: Dict[int, Dict], jobs: int,
                      depth: int) -> None:
    """Train the pending points ``jobs`` at a time, each in a child process that writes its own ``result.json``,
    seed by seed and the most expensive first, so an interrupted study has whole seeds rather than a few of each.
    With several GPUs each child takes the least busy one. A point counts as finished when its result is on disk
    (a child that fails after writing it is warned about); a failed point is reported at the end while the others
    still run. Stopped, the parent stops its children, and a child whose parent dies stops too."""
    import subprocess
    seeds = list(dict.fromkeys(points[i].seed for i in pending))
    queue = sorted(pending, key=lambda i: (seeds.index(points[i].seed), points[i].cost(depth), i))
    env = _child_env(jobs)
    gpus = _visible_gpus()
    running: Dict[int, tuple] = {}  # index -> (process, log file, start time, GPU id or None)
    failed = []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                i = queue.pop(0)
                p = points[i]
                p.dir.mkdir(parents=True, exist_ok=True)
                spec = dict(config=p.config, cfg_options=repr(p.cfg_options), k=p.k, ckpt=p.ckpt, dir=str(p.dir),
                            epochs=p.epochs, seed=p.seed, fingerprint=p.fingerprint, parent_pid=os.getpid())
                gpu = None
                if len(gpus) > 1:  # the GPU with the fewest running children
                    gpu = min(gpus, key=lambda g: (sum(r[3] == g for r in running.values()), gpus.index(g)))
                log = open(p.dir / "point.log", "w")
                with _stop_signals_held():  # a stop between the fork and the bookkeeping would orphan the child
                    proc = subprocess.Popen(_child_command(json.dumps(spec)), stdout=log, stderr=subprocess.STDOUT,
                                            env=env if gpu is None else dict(env, CUDA_VISIBLE_DEVICES=gpu))
                    running[i] = (proc, log, time.time(), gpu)
                print(f"started {p.label}" + ("" if gpu is None else f" on GPU {gpu}") +
                      f" (log: {p.dir / 'point.log'})", flush=True)
            time.sleep(0.5)
            for i, (proc, log, t0, _) in list(running.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del running[i]
                p = points[i]
                try:
                    if not p.done.exists():
                        raise RuntimeError(f"exit {proc.returncode} without a result.json" if proc.returncode == 0
                                           else f"exit {proc.returncode}")
                    rows[i] = p.saved_row()
                except (RuntimeError, OSError, ValueError, KeyError) as err:
                    failed.append(f"{p.label} ({err}; {p.dir / 'point.log'})")
                    print(f"FAILED {failed[-1]}", flush=True)
                    continue
                if proc.returncode:
                    print(f"warning: {p.label} wrote its result, then exited {proc.returncode} ({p.dir / 'point.log'})",
                          flush=True)
                print(f"finished {p.label}: top-1 {rows[i]['top1']:.2f} ({time.time() - t0:.0f} s)", flush=True)
    finally:
        with _stop_signals_held():  # a second Ctrl-C must not cut the cleanup short
            for proc, _, _, _ in running.values():  # stopped: the children stop with it, within 10 s
                proc.terminate()
            deadline = time.time() + 10
            for proc, log, _, _ in running.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
            if failed and running:
                print(f"{len(failed)} point(s) had failed before the study stopped: " + "; ".join(failed), flush=True)
    if failed:
        raise RuntimeError(f"{len(failed)} point(s) failed: " + "; ".join(failed))


@contextmanager
def _stop_signals_held():
    """SIGINT / SIGTERM wait (pending) until the block ends; where signal masks do not exist, nothing."""
    import signal
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)


def _child_env(jobs: int) -> Dict[str, str]:
    """The children share the cores: one thread pool each of (cores / jobs), unless the user chose one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = str(max(1, cores // jobs))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("MKL_NUM_THREADS", threads)
    return env


def _visible_gpus() -> List[str]:
    """The GPU ids children may use (CUDA_VISIBLE_DEVICES order), or [] without CUDA."""
    import torch
    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
    return ids or [str(i) for i in range(torch.cuda.device_count())]


def _stop_with_parent(parent_pid: int) -> None:
    """First thing in a child: take the stop signals again (the parent held them across the fork, and a mask
    survives exec; one that arrived meanwhile is delivered now), stop if the parent is already gone, and on Linux
    receive SIGTERM when it dies (a SIGKILLed study leaves no trainer running on)."""
    import signal
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        raise SystemExit(f"the study (pid {parent_pid}) is gone; not training")


def _child_command(spec_json: str) -> List[str]:
    """``python -c`` with this package's own location first on the path instead of the working directory (which
    ``-c`` puts first), so the child imports the code the study runs, not another checkout where it is started."""
    import site
    import sys
    parent = str(Path(__file__).resolve().parents[2])
    site_dirs = {str(Path(d).resolve()) for d in site.getsitepackages() + [site.getusersitepackages()]}
    head = "del sys.path[0]; " if parent in site_dirs else f"sys.path[0] = {parent!r}; "
    code = (f"import sys; {head}from mae_backbone.engine.study_children import run_one_point; "
            f"run_one_point(sys.argv[1])")
    return [sys.executable, "-c", code, spec_json]


def run_one_point(spec_json: str) -> None:
    """A child of :func:`run_in_processes`: train one point, write its ``result.json`` (atomically)."""
    spec = json.loads(spec_json)
    _stop_with_parent(spec["parent_pid"])
    cfg = Config.fromfile(spec["config"])
    apply_cfg_options(cfg, ast.literal_eval(spec["cfg_options"]))  # a repr: tuples stay tuples (JSON makes lists)
    from .partial_study import run_point
    row = run_point(cfg, spec["k"], spec["ckpt"], Path(spec["dir"]), epochs=spec["epochs"], seed=spec["seed"])
    atomic_write_text(Path(spec["dir"]) / "result.json", json.dumps(dict(row=row, fingerprint=spec["fingerprint"])))

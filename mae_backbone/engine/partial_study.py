"""Partial fine-tuning study (MAE paper Fig. 9): one training per k, top-1 vs. fine-tuned blocks.

The schedule is a study parameter: the paper (appendix A.1) trains each k for 50, 100 or 200 epochs and reports
the best, "tuning fewer blocks requires a longer schedule". ``epochs=[50, 100, 200]`` runs that search (every
point retimed by :func:`~mae_backbone.engine.launch.set_epochs`) and reports the best schedule per k.
``seeds=[0, 1, 2]`` trains every point once per seed and reports mean +- standard deviation (error bars).
"""
from __future__ import annotations

import ast
import csv
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ..files import atomic_write, atomic_write_text
from ..models import resolve_arch
from .hooks import bare_model
from .launch import apply_cfg_options, build_runner, init_distributed, set_epochs

FIELDS = ("init", "k", "blocks", "epochs", "seed", "top1", "top5", "train_seconds", "trainable_params")
SUMMARY_FIELDS = ("init", "k", "blocks", "epochs", "runs", "top1_mean", "top1_std", "top5_mean", "top5_std",
                  "train_seconds", "trainable_params")


def parse_blocks(values: Sequence[str]) -> List[Union[int, str]]:
    """CLI values -> k list: ints or 'all'."""
    out = []
    for v in values:
        if v == "all":
            out.append("all")
        elif str(v).isdigit():
            out.append(int(v))
        else:
            raise ValueError(f"--blocks takes non-negative integers or 'all', got {v!r}")
    return out


class _LastValMetrics(Hook):
    """Keeps the metrics of the last validation (mmengine always validates after the final epoch)."""
    priority = "LOWEST"

    def __init__(self):
        self.metrics = None

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = metrics


def encoder_depth(cfg: Config) -> int:
    """Depth of the classifier a config builds (its override, else the preset's)."""
    if cfg.model.get("depth"):
        return int(cfg.model.depth)
    try:
        return resolve_arch(cfg.model.arch).depth
    except ValueError as err:
        raise ValueError(f"{cfg.filename}: {err}") from None


def run_point(cfg: Config, k: Union[int, str], pretrained: Optional[str], work_dir: Path,
              launcher: str = "none", epochs: Optional[int] = None, seed: Optional[int] = None) -> Dict:
    """Train one configuration with the last ``k`` blocks trainable (for ``epochs`` and with ``seed``, default: the
    config's); evaluate; return its result row."""
    cfg = Config(cfg.to_dict())  # independent copy
    if epochs is not None:
        set_epochs(cfg, epochs)
    if seed is not None:
        cfg.randomness = dict(cfg.get("randomness") or {}, seed=int(seed))
    cfg.work_dir = str(work_dir)
    # mmengine keys its logger by experiment name (default: config + timestamp in seconds): two points
    # started within one second would share a log file. A name per point keeps each point's log its own.
    cfg.experiment_name = f"{Path(work_dir).name}_{time.strftime('%Y%m%d_%H%M%S')}"
    cfg.model.finetune_blocks = k
    cfg.model.pretrained = pretrained
    t0 = time.time()
    runner = build_runner(cfg, launcher)
    last_val = _LastValMetrics()
    runner.register_hook(last_val)
    runner.train()
    seconds = time.time() - t0
    metrics = last_val.metrics or runner.val_loop.run()
    model = bare_model(runner.model)
    depth = model.model.depth
    return dict(init="MAE" if pretrained else "random init", k=str(k), blocks=depth if k == "all" else int(k),
                epochs=int(cfg.train_cfg.max_epochs), seed=(cfg.get("randomness") or {}).get("seed", ""),
                top1=round(float(metrics["accuracy/top1"]), 2), top5=round(float(metrics["accuracy/top5"]), 2),
                train_seconds=round(seconds, 1), trainable_params=model.freeze_report.trainable)


def run_study(config: str, blocks: Sequence[Union[int, str]], pretrained: Optional[str], work_dir: str,
              baseline_random_init: bool = False, cfg_options: Optional[dict] = None,
              launcher: str = "none", epochs: Optional[Sequence[int]] = None,
              seeds: Optional[Sequence[int]] = None, jobs: int = 1) -> List[Dict]:
    """Run (or resume) every (init, k, epochs, seed) point; write study.csv (every run), study_summary.csv (mean and
    standard deviation over seeds), study.md and study.png (with error bars) in ``work_dir``.

    ``epochs``: schedules to try for every k (the paper's search: 50, 100, 200); None runs the config's.
    ``seeds``: one run per seed for every point; None runs the config's seed once.
    ``jobs``: points trained at once, each in its own process on this machine (one GPU holds several small ones);
    their output goes to ``<point>/point.log``. Interrupted (KeyboardInterrupt; the command line turns SIGTERM into
    one), the study writes its report from the points finished so far before it stops; a rerun trains the rest."""
    from tqdm import tqdm
    if not pretrained and not baseline_random_init:
        raise ValueError("nothing to compare: pass --pretrained CKPT and/or --baseline-random-init")
    if int(jobs) < 1 or (int(jobs) > 1 and launcher != "none"):
        raise ValueError(f"--jobs must be >= 1, and 1 under a launcher (each distributed job runs one point at a "
                         f"time on all its GPUs), got jobs={jobs}, launcher={launcher!r}")
    if pretrained:  # a path, a URL or an official name -> a local, verified file (before any training starts)
        from ..weights import resolve_checkpoint
        pretrained = str(resolve_checkpoint(pretrained))
    init_distributed(launcher)  # before any rank-dependent decision (skipping, writing)
    cfg = Config.fromfile(config)
    if cfg_options and "epochs" in cfg_options and epochs:
        raise ValueError("give the schedule once: --epochs E ... or --cfg-options epochs=E, not both")
    apply_cfg_options(cfg, cfg_options)  # as tools/train.py: epochs=E retimes, data_root=DIR moves the paths
    depth = encoder_depth(cfg)
    schedules = [None] if not epochs else [int(e) for e in epochs]
    if schedules != [None] and (len(set(schedules)) != len(schedules) or min(schedules) < 1):
        raise ValueError(f"--epochs must be distinct positive integers, got {list(epochs)}")
    for e in schedules:  # refuse a schedule the config cannot be retimed to before any training starts
        if e is not None:
            set_epochs(Config(cfg.to_dict()), e)
    seed_list = [None] if not seeds else [int(v) for v in seeds]
    if seed_list != [None] and len(set(seed_list)) != len(seed_list):
        raise ValueError(f"--seeds must be distinct integers, got {list(seeds)}")
    bad = [k for k in blocks if k != "all" and not 0 <= k <= depth]
    if bad or len({depth if k == "all" else k for k in blocks}) != len(blocks):
        raise ValueError(f"--blocks must be distinct values in [0, {depth}] or 'all' (= {depth}), got {list(blocks)}")
    inits = ([("mae", pretrained)] if pretrained else []) + ([("random", None)] if baseline_random_init else [])
    out = Path(work_dir)
    points = [_Point(name, ckpt, k, e, sd, out, config, cfg_options)
              for name, ckpt, k, e, sd in ((n, c, k, e, sd) for n, c in inits for k in blocks for e in schedules
                                           for sd in seed_list)]
    rows: Dict[int, Dict] = {}
    pending = []
    for i, point in enumerate(points):
        if _rank0_says(point.done.exists()):  # every rank must agree, even without a shared filesystem
            if is_main_process():
                rows[i] = point.saved_row()
                tqdm.write(f"skipping finished point {point.label} ({point.done})")
        else:
            pending.append(i)
    try:
        if int(jobs) == 1:
            for i in tqdm(pending, desc="partial fine-tuning study", disable=not is_main_process()):
                p = points[i]
                row = run_point(cfg, p.k, p.ckpt, p.dir, launcher, epochs=p.epochs, seed=p.seed)
                if is_main_process():
                    p.save(row)
                rows[i] = row
        else:
            _run_in_processes(points, pending, rows, int(jobs), depth)
    except BaseException:  # interrupted or failed: report what finished, then stop with the original error
        if is_main_process():
            _report_partial(points, pending, rows, out)
        raise
    ordered = [rows[i] for i in sorted(rows)]
    if is_main_process():
        write_outputs(ordered, out)
    return ordered


def _report_partial(points: List["_Point"], pending: List[int], rows: Dict[int, Dict], out: Path) -> None:
    """The report of a study that stopped: the points finished so far (also one whose child wrote its result
    after the last poll). Nothing here may replace the error that stopped the study: its own failures are
    printed."""
    for i in pending:
        if i not in rows and points[i].done.exists():
            try:
                rows[i] = points[i].saved_row()
            except (OSError, ValueError, KeyError):
                pass  # reported as failed by the loop already
    if not rows:
        return
    try:
        write_outputs([rows[i] for i in sorted(rows)], out)
    except Exception as err:  # noqa: BLE001 - the original error matters more
        print(f"could not write the report of the finished points: {err!r}", flush=True)
        return
    print(f"study stopped with {len(rows)} of {len(points)} points finished; wrote the report for those to {out}; "
          f"a rerun trains the rest", flush=True)


class _Point:
    """One (init, k, epochs, seed) run of a study: its directory, its fingerprint, its saved result."""

    def __init__(self, name, ckpt, k, epochs, seed, out: Path, config: str, cfg_options):
        self.name, self.ckpt, self.k, self.epochs, self.seed = name, ckpt, k, epochs, seed
        self.config, self.cfg_options = config, dict(cfg_options or {})
        self.dir = out / (f"{name}_k{k}" + ("" if epochs is None else f"_e{epochs}") +
                          ("" if seed is None else f"_s{seed}"))
        self.done = self.dir / "result.json"
        self.label = f"{name} k={k} epochs={epochs} seed={seed}"
        self.fingerprint = dict(config=os.path.abspath(config), pretrained=ckpt and os.path.abspath(ckpt), k=str(k),
                                cfg_options=repr(sorted((cfg_options or {}).items())))
        if epochs is not None:  # (studies written before schedules / seeds were parameters have no such key)
            self.fingerprint["epochs"] = epochs
        if seed is not None:
            self.fingerprint["seed"] = seed

    def saved_row(self) -> Dict:
        saved = json.loads(self.done.read_text())
        if saved.get("fingerprint") != self.fingerprint:
            raise ValueError(f"{self.done} was produced with other settings ({saved.get('fingerprint')}); "
                             f"use another --work-dir or delete {self.dir} to rerun it")
        return {"epochs": "", "seed": "", **saved["row"]}

    def save(self, row: Dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.done, json.dumps(dict(row=row, fingerprint=self.fingerprint)))  # whole, or not there

    def cost(self, depth: int) -> tuple:
        """Sort key, most expensive first: longer schedules, then more trained blocks."""
        return (-(self.epochs or 0), -(depth if self.k == "all" else int(self.k)))


def _run_in_processes(points: List["_Point"], pending: List[int], rows: Dict[int, Dict], jobs: int,
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
    code = (f"import sys; {head}from mae_backbone.engine.partial_study import _run_one_point; "
            f"_run_one_point(sys.argv[1])")
    return [sys.executable, "-c", code, spec_json]


def _run_one_point(spec_json: str) -> None:
    """A child of :func:`_run_in_processes`: train one point, write its ``result.json`` (atomically)."""
    spec = json.loads(spec_json)
    _stop_with_parent(spec["parent_pid"])
    cfg = Config.fromfile(spec["config"])
    apply_cfg_options(cfg, ast.literal_eval(spec["cfg_options"]))  # a repr: tuples stay tuples (JSON makes lists)
    row = run_point(cfg, spec["k"], spec["ckpt"], Path(spec["dir"]), epochs=spec["epochs"], seed=spec["seed"])
    _write_atomic(Path(spec["dir"]) / "result.json", json.dumps(dict(row=row, fingerprint=spec["fingerprint"])))


def _write_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _rank0_says(flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every rank (a broadcast under DDP)."""
    from mmengine.dist import broadcast_object_list, get_world_size
    if get_world_size() == 1:
        return flag
    box = [flag]
    broadcast_object_list(box, src=0)
    return bool(box[0])


def summarize(rows: List[Dict]) -> List[Dict]:
    """One row per (init, k, epochs): runs, mean and sample standard deviation of top-1 / top-5 over the seeds."""
    import statistics
    groups: Dict = {}
    for r in rows:
        groups.setdefault((r["init"], r["k"], r["epochs"]), []).append(r)
    out = []
    for (init, k, epochs), runs in groups.items():
        top1 = [float(r["top1"]) for r in runs]
        top5 = [float(r["top5"]) for r in runs]
        std = (lambda v: round(statistics.stdev(v), 2) if len(v) > 1 else 0.0)  # noqa: E731
        out.append(dict(init=init, k=k, blocks=runs[0]["blocks"], epochs=epochs, runs=len(runs),
                        top1_mean=round(statistics.fmean(top1), 2), top1_std=std(top1),
                        top5_mean=round(statistics.fmean(top5), 2), top5_std=std(top5),
                        train_seconds=round(statistics.fmean(float(r["train_seconds"]) for r in runs), 1),
                        trainable_params=runs[0]["trainable_params"]))
    return out


def best_per_k(summary: List[Dict]) -> List[Dict]:
    """For each (init, k), the schedule with the best mean top-1 (the paper's choice per k, A.1)."""
    best: Dict = {}
    for r in summary:
        key = (r["init"], r["k"])
        if key not in best or float(r["top1_mean"]) > float(best[key]["top1_mean"]):
            best[key] = r
    return list(best.values())


def _runs_table(rows: List[Dict]) -> List[str]:
    lines = ["| init | fine-tuned blocks | epochs | seed | top-1 | top-5 | trainable params | train time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    return lines + [f"| {r['init']} | {r['k']} | {r['epochs']} | {r['seed']} | {r['top1']:.2f} | {r['top5']:.2f} | "
                    f"{r['trainable_params']:,} | {r['train_seconds']:.0f} |" for r in rows]


def _summary_table(summary: List[Dict]) -> List[str]:
    lines = ["| init | fine-tuned blocks | epochs | runs | top-1 (mean +- std) | top-5 (mean +- std) | "
             "trainable params |", "|---|---|---|---|---|---|---|"]
    def spread(mean, std, runs):  # one run has no spread to report
        return f"{mean:.2f} +- {std:.2f}" if runs > 1 else f"{mean:.2f} (1 run)"
    return lines + [f"| {r['init']} | {r['k']} | {r['epochs']} | {r['runs']} | "
                    f"{spread(r['top1_mean'], r['top1_std'], r['runs'])} | "
                    f"{spread(r['top5_mean'], r['top5_std'], r['runs'])} | {r['trainable_params']:,} |" for r in summary]


def write_outputs(rows: List[Dict], out: Path) -> None:
    """study.csv (every run), study_summary.csv and study.md (mean +- std over seeds; the best schedule per k when
    several were run) and study.png (top-1 vs. number of fine-tuned blocks, error bars = std over seeds). Each
    file is replaced whole (a stop while writing leaves the previous version)."""
    import io
    out.mkdir(parents=True, exist_ok=True)

    def csv_text(fields, records):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buf.getvalue()
    summary = summarize(rows)
    _write_atomic(out / "study.csv", csv_text(FIELDS, rows))
    _write_atomic(out / "study_summary.csv", csv_text(SUMMARY_FIELDS, summary))
    best = best_per_k(summary)
    lines = _runs_table(rows)
    if len(summary) < len(rows):
        lines += ["", "Mean +- standard deviation over seeds:", ""] + _summary_table(summary)
    if len(best) < len(summary):
        lines += ["", "Best schedule per k (the paper's protocol, appendix A.1):", ""] + _summary_table(best)
    _write_atomic(out / "study.md", "\n".join(lines) + "\n")
    atomic_write(out / "study.png", lambda f: plot(best, f))


def plot(summary: List[Dict], path) -> None:
    """Figure-9-style plot into ``path`` (a file name or a binary file; PNG): x = number of fine-tuned blocks, y =
    mean top-1 with std error bars over the seeds, one line per initialisation."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    for init in dict.fromkeys(r["init"] for r in summary):
        pts = sorted((int(r["blocks"]), float(r["top1_mean"]), float(r["top1_std"]))
                     for r in summary if r["init"] == init)
        xs, ys, es = zip(*pts)
        ax.errorbar(xs, ys, yerr=es if any(es) else None, marker="o", capsize=3, label=init)
        for x, y, _ in pts:
            ax.annotate(f"{y:.1f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_xlabel("# blocks fine-tuned")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


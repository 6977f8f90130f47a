"""Partial fine-tuning study (MAE paper Fig. 9): one training per k, top-1 vs. fine-tuned blocks.

The schedule is a study parameter: the paper (appendix A.1) trains each k for 50, 100 or 200 epochs and reports
the best, "tuning fewer blocks requires a longer schedule". ``epochs=[50, 100, 200]`` runs that search (every
point retimed by :func:`~mae_backbone.engine.launch.set_epochs`) and reports the best schedule per k.
``seeds=[0, 1, 2]`` trains every point once per seed and reports mean +- standard deviation (error bars).
``jobs=N`` trains N points at once in child processes (:mod:`.study_children`); the report is
:mod:`.study_report`'s.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from mmengine.config import Config
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ..files import atomic_write_text
from ..models import resolve_arch
from .hooks import bare_model
from .launch import apply_cfg_options, build_runner, init_distributed, set_epochs
from .study_children import run_in_processes
from .study_report import best_per_k, summarize, write_outputs  # noqa: F401  (the study's API)


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
            run_in_processes(points, pending, rows, int(jobs), depth)
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
        atomic_write_text(self.done, json.dumps(dict(row=row, fingerprint=self.fingerprint)))  # whole, or not there

    def cost(self, depth: int) -> tuple:
        """Sort key, most expensive first: longer schedules, then more trained blocks."""
        return (-(self.epochs or 0), -(depth if self.k == "all" else int(self.k)))


def _rank0_says(flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every rank (a broadcast under DDP)."""
    from mmengine.dist import broadcast_object_list, get_world_size
    if get_world_size() == 1:
        return flag
    box = [flag]
    broadcast_object_list(box, src=0)
    return bool(box[0])



"""The report of a partial fine-tuning study: every run, mean and standard deviation over seeds, the best schedule
per k, and the Figure-9 plot; each file replaced whole."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List

from ..files import atomic_write, atomic_write_text


FIELDS = ("init", "k", "blocks", "epochs", "seed", "top1", "top5", "train_seconds", "trainable_params")


SUMMARY_FIELDS = ("init", "k", "blocks", "epochs", "runs", "top1_mean", "top1_std", "top5_mean", "top5_std",
                  "train_seconds", "trainable_params")


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
    atomic_write_text(out / "study.csv", csv_text(FIELDS, rows))
    atomic_write_text(out / "study_summary.csv", csv_text(SUMMARY_FIELDS, summary))
    best = best_per_k(summary)
    lines = _runs_table(rows)
    if len(summary) < len(rows):
        lines += ["", "Mean +- standard deviation over seeds:", ""] + _summary_table(summary)
    if len(best) < len(summary):
        lines += ["", "Best schedule per k (the paper's protocol, appendix A.1):", ""] + _summary_table(best)
    atomic_write_text(out / "study.md", "\n".join(lines) + "\n")
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

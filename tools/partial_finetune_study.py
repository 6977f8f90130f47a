"""Partial fine-tuning study (MAE paper Fig. 9): train the last k blocks for each k, compare inits.

python tools/partial_finetune_study.py CONFIG --blocks 0 1 2 4 all --pretrained CKPT --baseline-random-init
python tools/partial_finetune_study.py CONFIG --blocks 0 1 2 4 all --pretrained CKPT --epochs 50 100 200
  (the paper's protocol, appendix A.1: each k trained for 50, 100 and 200 epochs, the best reported)
python tools/partial_finetune_study.py CONFIG --blocks 0 1 2 4 all --pretrained CKPT --seeds 0 1 2
  (every point once per seed: mean +- std in study.md / study_summary.csv, error bars in study.png)
python tools/partial_finetune_study.py CONFIG ... --jobs 8
  (8 points at once, each in its own process, on this machine's GPUs in turn or its cores; not with --launcher)
Writes <work-dir>/study.csv (every run), study_summary.csv (mean and std over seeds), study.md and study.png;
each point keeps its own work dir and log, and a rerun skips the points already finished. Stopped by Ctrl-C, or
by SIGTERM (a scheduler's time limit) when it runs without --launcher, the study writes its report from the points
finished so far and exits with 128 + the signal number (130, 143).
"""
import argparse
import os.path as osp
import signal
import sys


from mmengine.config import DictAction


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a classification config (configs/classification/*partial*.py)")
    p.add_argument("--blocks", nargs="+", required=True, help="values of k: integers and/or 'all'")
    p.add_argument("--pretrained", help="MAE checkpoint (any supported layout)")
    p.add_argument("--baseline-random-init", action="store_true", help="also run every k from random init")
    p.add_argument("--epochs", nargs="+", type=int,
                   help="schedules (epochs) to try for every k; the best per k is reported (default: the config's)")
    p.add_argument("--seeds", nargs="+", type=int, help="train every point once per seed (default: the config's seed)")
    p.add_argument("--work-dir", help="default: work_dirs/study_<config name>")
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    p.add_argument("--jobs", type=int, default=1,
                   help="points trained at once, each in its own process on this machine (default 1)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    args = p.parse_args()

    received = []

    def stop(signum, frame):  # a time limit (timeout, a scheduler): stop like Ctrl-C, reporting what finished
        received.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")
    if args.launcher == "none":  # (distributed ranks keep the default: a rank stopped mid-collective would hang)
        signal.signal(signal.SIGTERM, stop)

    from mae_backbone.engine import shutdown_distributed
    from mae_backbone.engine.partial_study import parse_blocks, run_study

    work_dir = args.work_dir or osp.join("work_dirs", "study_" + osp.splitext(osp.basename(args.config))[0])
    from mmengine.dist import is_main_process
    try:
        rows = run_study(args.config, parse_blocks(args.blocks), args.pretrained, work_dir,
                         baseline_random_init=args.baseline_random_init, cfg_options=args.cfg_options,
                         launcher=args.launcher, epochs=args.epochs, seeds=args.seeds, jobs=args.jobs)
        if rows and is_main_process():  # before the process group goes away
            print(open(osp.join(work_dir, "study.md")).read())
            print(f"wrote {work_dir}/study.csv, study_summary.csv, study.md, study.png")
    except KeyboardInterrupt as stopped:  # the report of the finished points is written; say so without a traceback
        print(f"stopped ({str(stopped) or 'Ctrl-C'})", file=sys.stderr)
        sys.exit(128 + (received[0] if received else signal.SIGINT))
    shutdown_distributed()  # after a finished study only: a rank that fails exits at once and torchrun stops the rest


if __name__ == "__main__":
    main()

"""tools/partial_finetune_study.py end to end on a Fashion-MNIST subset, and its resume."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from mae_backbone.models import mae_vit_tiny_patch16

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "classification", "vit-d96-p4_mae-partial_1xb256-1e_fashion-mnist.py")
pytestmark = pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                                reason="dataset-fashion-mnist not installed")


def run_study(work_dir, ckpt, blocks=("0", "all"), expect_ok=True):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "partial_finetune_study.py"), CONFIG,
           "--blocks", *blocks, "--pretrained", str(ckpt), "--baseline-random-init", "--work-dir", str(work_dir),
           "--cfg-options", "train_dataloader.dataset.limit=64", "train_dataloader.batch_size=32",
           "val_dataloader.dataset.limit=64", "default_hooks.logger.interval=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert (proc.returncode == 0) == expect_ok, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def tiny_mae_checkpoint(tmp_path):
    """An MAE checkpoint of the Fashion-MNIST config's shape (untrained)."""
    torch.manual_seed(0)
    mae = mae_vit_tiny_patch16(img_size=28, patch_size=4, in_chans=1, embed_dim=96, depth=6, num_heads=3,
                               decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=2)
    torch.save({"model": mae.state_dict()}, tmp_path / "mae.pth")
    return tmp_path / "mae.pth"


def test_study_runs_resumes_and_reports(tmp_path):
    ckpt = tiny_mae_checkpoint(tmp_path)
    out = tmp_path / "study"
    run_study(out, ckpt)
    with open(out / "study.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["init"], r["k"], r["blocks"]) for r in rows] == [
        ("MAE", "0", "0"), ("MAE", "all", "6"), ("random init", "0", "0"), ("random init", "all", "6")]
    assert all(0 <= float(r["top1"]) <= 100 for r in rows)
    trainable = {(r["init"], r["k"]): int(r["trainable_params"]) for r in rows}
    # k = 0 trains the new fc_norm (avg pooling) and the head only
    assert trainable[("MAE", "0")] < trainable[("MAE", "all")] and trainable[("MAE", "0")] == 2 * 96 + 96 * 10 + 10
    assert Image.open(out / "study.png").size[0] > 300
    assert "| MAE | all |" in (out / "study.md").read_text()
    for point in ["mae_k0", "mae_kall", "random_k0", "random_kall"]:  # each point keeps its own log
        logs = list((out / point).glob("*/*.log"))
        assert len(logs) == 1, f"{point}: {logs}"
        assert (str(ckpt) in logs[0].read_text()) == point.startswith("mae"), point
    # resume: finished points are skipped, their results untouched
    stamp = (out / "mae_k0" / "result.json").stat().st_mtime_ns
    log = run_study(out, ckpt)
    assert log.count("skipping finished point") == 4
    assert (out / "mae_k0" / "result.json").stat().st_mtime_ns == stamp
    # the same work dir with another checkpoint must not reuse these results
    other = tmp_path / "other.pth"
    other.write_bytes(ckpt.read_bytes())
    assert "produced with other settings" in run_study(out, other, expect_ok=False)


def test_bad_block_lists_fail_before_training(tmp_path):
    """Out of range, repeated, and 'all' repeating the depth: refused before anything starts (the first through the
    command line, the others through the library call it makes, saving a process start each)."""
    from mae_backbone.engine.partial_study import run_study as study
    ckpt = tmp_path / "exists.pth"
    ckpt.write_bytes(b"never read: the block list is checked first")
    log = run_study(tmp_path / "s", ckpt, blocks=("0", "7"), expect_ok=False)
    assert "--blocks must be distinct values in [0, 6]" in log
    for blocks in ((2, 2), (6, "all")):
        with pytest.raises(ValueError, match=r"--blocks must be distinct values in \[0, 6\]"):
            study(CONFIG, blocks, str(ckpt), str(tmp_path / "s"))
    assert not (tmp_path / "s").exists()  # nothing started


def test_jobs_run_points_in_child_processes(tmp_path):
    """--jobs 2: each point in its own process (``python -c`` running ``study_children.run_one_point``), its output in
    <point>/point.log; the report lists the points in study order, whatever order they finished in."""
    ckpt = tiny_mae_checkpoint(tmp_path)
    out = tmp_path / "study"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "partial_finetune_study.py"), CONFIG, "--blocks", "0", "all",
           "--pretrained", str(ckpt), "--jobs", "2", "--work-dir", str(out), "--cfg-options",
           "train_dataloader.dataset.limit=32", "train_dataloader.batch_size=32", "val_dataloader.dataset.limit=32"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("started mae k=") == 2
    with open(out / "study.csv") as f:
        assert [(r["init"], r["k"]) for r in csv.DictReader(f)] == [("MAE", "0"), ("MAE", "all")]
    for point in ("mae_k0", "mae_kall"):
        assert "Epoch(val)" in (out / point / "point.log").read_text()  # the child's own log, trained and evaluated
        assert (out / point / "result.json").exists() and not (out / point / "result.json.tmp").exists()


def _fake_children(monkeypatch, script):
    """Replace the training child by ``script`` (gets the point's JSON spec as argv[1])."""
    from mae_backbone.engine import partial_study, study_children
    monkeypatch.setattr(study_children, "_child_command", lambda spec: [sys.executable, "-c", script, spec])
    return partial_study


FAKE_CHILD = """
import json, os, signal, sys, time
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # as the real child's first step
spec = json.loads(sys.argv[1])
k = spec["k"]
if k == 1:
    sys.exit(3)  # a point that fails
if k == 2:
    sys.exit(0)  # a child that claims success but wrote no result
if k == 4:
    time.sleep(60)  # a point still training when the study is stopped
row = dict(init="random init", k=str(k), blocks=6 if k == "all" else k, epochs=spec["epochs"], seed=spec["seed"],
           top1=90.0 + (0 if k == "all" else k), top5=99.0, train_seconds=1.0, trainable_params=10)
fingerprint = dict(spec["fingerprint"], k="another") if k == 6 else spec["fingerprint"]
open(os.path.join(spec["dir"], "result.json"), "w").write(json.dumps(dict(row=row, fingerprint=fingerprint)))
if k == 3:
    sys.exit(1)  # fails after its result is on disk (say, in teardown)
if k == 5:
    time.sleep(60)  # finished its point, not yet exited when the study is stopped
"""


def test_jobs_report_failed_points_and_finish_the_others(tmp_path, monkeypatch, capsys):
    """Failed points (an exit code, no result, a result of other settings) are listed at the end while the others
    run on; a point whose result is on disk counts, with a warning when its process then failed."""
    partial_study = _fake_children(monkeypatch, FAKE_CHILD)
    out = tmp_path / "s"
    with pytest.raises(RuntimeError, match=r"3 point\(s\) failed: ") as failure:
        partial_study.run_study(CONFIG, [0, 1, 2, 3, 6], None, str(out), baseline_random_init=True, seeds=[0],
                                jobs=2)
    assert "random k=1 epochs=None seed=0 (exit 3; " in str(failure.value)
    assert "random k=2 epochs=None seed=0 (exit 0 without a result.json; " in str(failure.value)
    assert "random k=6 epochs=None seed=0 (" in str(failure.value) and "other settings" in str(failure.value)
    assert "warning: random k=3 epochs=None seed=0 wrote its result, then exited 1" in capsys.readouterr().out
    with open(out / "study.csv") as f:  # the finished points are reported, in study order
        assert [(r["k"], r["top1"]) for r in csv.DictReader(f)] == [("0", "90.0"), ("3", "93.0")]
    assert not (out / "random_k1_s0" / "result.json").exists()  # a rerun trains the failed points again


GPU_CHILD = """
import json, os, sys, time
spec = json.loads(sys.argv[1])
open(os.path.join(spec["dir"], "gpu.txt"), "w").write(os.environ["CUDA_VISIBLE_DEVICES"])
time.sleep(4 if spec["k"] == "all" else 0)
row = dict(init="random init", k=str(spec["k"]), blocks=0, epochs=None, seed=None, top1=1.0, top5=1.0,
           train_seconds=1.0, trainable_params=1)
open(os.path.join(spec["dir"], "result.json"), "w").write(json.dumps(dict(row=row, fingerprint=spec["fingerprint"])))
"""


def test_each_child_takes_the_least_busy_gpu(tmp_path, monkeypatch):
    partial_study = _fake_children(monkeypatch, GPU_CHILD)
    from mae_backbone.engine import study_children
    monkeypatch.setattr(study_children, "_visible_gpus", lambda: ["0", "1"])
    out = tmp_path / "s"
    partial_study.run_study(CONFIG, [0, 1, 2, "all"], None, str(out), baseline_random_init=True, jobs=2)
    gpu = {k: (out / f"random_k{k}" / "gpu.txt").read_text() for k in ("all", "2", "1", "0")}
    # 'all' (started first, the longest) holds GPU 0 throughout; the short points follow each other on GPU 1
    assert gpu == {"all": "0", "2": "1", "1": "1", "0": "1"}


def test_a_stopped_study_reports_what_finished_and_stops_its_children(tmp_path, monkeypatch):
    """SIGTERM (a scheduler's time limit) or Ctrl-C: the running children are stopped, the report covers the points
    finished so far (also one whose child had written its result but not yet exited), and a rerun skips them."""
    import signal
    import time
    partial_study = _fake_children(monkeypatch, FAKE_CHILD)
    out = tmp_path / "s"
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]
    monkeypatch.setattr(subprocess, "Popen", popen)

    def stop(signum, frame):
        raise KeyboardInterrupt("time limit")
    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 4.0)
    t0 = time.time()
    try:
        with pytest.raises(KeyboardInterrupt):
            partial_study.run_study(CONFIG, [0, 4, 5], None, str(out), baseline_random_init=True, seeds=[0], jobs=3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.time() - t0 < 15  # the 60 s children were stopped, not waited for
    assert len(started) == 3 and all(p.poll() is not None for p in started)  # no child left running
    # the two still running were stopped by SIGTERM (not blocked in them), not by the SIGKILL after the deadline
    assert sorted(p.returncode for p in started) == sorted([0, -signal.SIGTERM, -signal.SIGTERM])
    with open(out / "study.csv") as f:
        assert [r["k"] for r in csv.DictReader(f)] == ["0", "5"]
    assert not (out / "random_k4_s0" / "result.json").exists()


@pytest.mark.parametrize("installed_as_site_package", [False, True])
def test_children_import_this_checkout_whatever_the_working_directory(tmp_path, monkeypatch,
                                                                      installed_as_site_package):
    """A child runs ``python -c`` with this package, not the working directory, first on its path: a different
    ``mae_backbone`` there (another checkout) must not be the one that trains, whether this package is a checkout
    or sits in site-packages."""
    import site
    from pathlib import Path
    from mae_backbone.engine import study_children
    if installed_as_site_package:
        parent = str(Path(study_children.__file__).resolve().parents[2])
        monkeypatch.setattr(site, "getsitepackages", lambda: [parent])
    decoy = tmp_path / "mae_backbone"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy checkout was imported')\n")
    spec = json.dumps(dict(config=str(tmp_path / "no_such_config.py"), cfg_options="{}", k=0, ckpt=None,
                           dir=str(tmp_path / "p"), epochs=None, seed=None, fingerprint={}, parent_pid=os.getpid()))
    command = study_children._child_command(spec)
    assert ("del sys.path[0]" in command[2]) == installed_as_site_package
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0 and "decoy" not in proc.stderr
    assert "no_such_config.py" in proc.stderr  # it got as far as reading the config, with the real package


def test_a_child_takes_the_stop_signals_back_first(tmp_path):
    """The study holds SIGTERM / SIGINT while it starts a child, and a mask survives exec: the child's first step
    takes them back, so a stop sent meanwhile ends it by SIGTERM before it trains (not a kill 10 s later)."""
    import signal
    from mae_backbone.engine.study_children import _child_command, _stop_signals_held
    spec = json.dumps(dict(config=CONFIG, cfg_options="{}", k=0, ckpt=None, dir=str(tmp_path / "p"), epochs=None,
                           seed=None, fingerprint={}, parent_pid=os.getpid()))
    with _stop_signals_held():
        proc = subprocess.Popen(_child_command(spec), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.terminate()  # arrives while the child still holds it (it is importing)
    assert proc.wait(timeout=120) == -signal.SIGTERM
    assert not (tmp_path / "p" / "result.json").exists()


def test_a_child_whose_study_is_gone_does_not_train(tmp_path):
    from mae_backbone.engine.study_children import _child_command
    spec = json.dumps(dict(config=CONFIG, cfg_options="{}", k=0, ckpt=None, dir=str(tmp_path / "p"), epochs=None,
                           seed=None, fingerprint={}, parent_pid=1))  # not its parent
    proc = subprocess.run(_child_command(spec), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode != 0 and "the study (pid 1) is gone; not training" in proc.stderr

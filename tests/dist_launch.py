"""Run tools/dist_train.sh with CPU ranks (gloo) from a test, leaving no process behind.

torchrun starts each rank in its own session, so killing torchrun's process group does not reach them: on a time-out
or any interruption, the ranks are found from /proc first, torchrun is asked to stop them (SIGTERM), and whatever is
still alive after a grace period is killed with its own process group (the rank and its data-loader workers).
"""
import os
import signal
import socket
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (a fixed one can still be held by an earlier run)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list:
    """Every process below ``pid``, read from /proc (empty where /proc has no children lists)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            children = []
        found += children
        todo += children
    return found


def _stop(proc: subprocess.Popen, grace_s: float = 60.0) -> None:
    """SIGTERM torchrun (it stops its ranks before it exits), then SIGKILL whatever is left: torchrun if it is still
    running, and each rank's process group (a rank and its data-loader workers)."""
    ranks = _descendants(proc.pid)
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
    for pid in ranks:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def dist_train(cfg_path, work_dir, *args, nprocs: int = 2, timeout: float = 600, pythonpath=None):
    """``bash tools/dist_train.sh CFG NPROCS --work-dir WORK ARGS`` with ``nprocs`` gloo ranks (1 thread each).

    Returns the finished ``CompletedProcess`` (text stdout / stderr); a run past ``timeout`` seconds fails the test.
    """
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS="1")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    cmd = ["bash", os.path.join(ROOT, "tools", "dist_train.sh"), str(cfg_path), str(nprocs),
           "--work-dir", str(work_dir), *map(str, args)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        out, err = proc.communicate(timeout=30)  # every writer of the pipes is gone
        pytest.fail(f"the {nprocs}-rank run did not finish in {timeout:.0f} s; stderr ends:\n{err[-2500:]}")
    except BaseException:  # Ctrl-C, a pytest time-out: no rank may outlive the test
        _stop(proc)
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

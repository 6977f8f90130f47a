"""The one child-process harness: run a benchmark function in a fresh Python process, so that its allocations,
caches and threads cannot slow the next measurement and its peak memory is its own.

    run_in_child("benchmarks.detection:detection_iteration", dict(variant="vitdet", batch=1))

The child (``python -m benchmarks.harness SPEC OUT``) makes the optional mmpretrain peer importable first (before
anything imports mmdet), calls the function with the keyword arguments and writes its JSON-able result to OUT.
"""
from __future__ import annotations

import importlib
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Any, Callable, Optional

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_in_child(target: str, kwargs: dict, echo: Optional[Callable[[str], None]] = None) -> Any:
    """``target`` is ``"module:function"``; each line the child prints goes to ``echo`` (when given) as it comes.
    A failing child raises RuntimeError with the last lines of its output."""
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, "result.json")
        spec = json.dumps(dict(target=target, kwargs=kwargs))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.harness", spec, out], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail = []
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-60:]
            if echo is not None:
                echo(line)
        if proc.wait() or not osp.exists(out):
            raise RuntimeError(f"{target}({kwargs}) failed in its process (exit {proc.returncode}):\n" + "\n".join(tail))
        with open(out) as f:
            return json.load(f)


def _child(spec: str, out: str) -> None:
    from benchmarks.peers import enable_mmpretrain_peer
    enable_mmpretrain_peer()
    spec = json.loads(spec)
    module, name = spec["target"].split(":")
    result = getattr(importlib.import_module(module), name)(**spec["kwargs"])
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    _child(*sys.argv[1:3])

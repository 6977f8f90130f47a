"""The layers only point down: models <- checkpoint <- weights <- engine (mmengine) <- downstream (mmdet / mmseg)
<- tools; benchmarks/ sits beside tools, outside the installed packages. Read from the source (every import
statement, lazy ones included), so an upward import anywhere fails here."""
import ast
import os
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def imports(path):
    """Absolute module names imported by one file (relative imports resolved)."""
    package = osp.relpath(path, ROOT)[:-3].split(os.sep)[:-1]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):  # the module, and each name as a possible submodule
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")):
            out.add(node.args[0].value)  # importlib.import_module("pkg.mod") / __import__("pkg")
    return out


def files(*parts):
    top = osp.join(ROOT, *parts)
    if top.endswith(".py"):
        return [top]
    return [osp.join(d, f) for d, _, fs in os.walk(top) for f in fs if f.endswith(".py")]


def offenders(paths, forbidden):
    bad = {}
    for path in paths:
        hits = sorted(m for m in imports(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if hits:
            bad[osp.relpath(path, ROOT)] = hits
    return bad


# (files, what they must not import)
RULES = {
    "models": (files("mae_backbone", "models"),
               ["mmengine", "mmcv", "mmdet", "mmseg", "downstream", "mae_backbone.checkpoint", "mae_backbone.weights",
                "mae_backbone.engine", "mae_backbone.data"]),
    "checkpoint": (files("mae_backbone", "checkpoint.py"),
                   ["mmengine", "mae_backbone.weights", "mae_backbone.engine", "downstream"]),
    "library without the engine": (
        [f for f in files("mae_backbone") if os.sep + "engine" + os.sep not in f
         and not f.endswith(osp.join("mae_backbone", "__init__.py"))],
        ["mae_backbone.engine", "mmdet", "mmseg", "mmcv", "downstream", "benchmarks"]),
    # (the engine may look at mmcv: its hook refuses a GPU run whose mmcv was built without CUDA ops)
    "engine": (files("mae_backbone", "engine"), ["mmdet", "mmseg", "downstream", "benchmarks"]),
    "downstream": (files("downstream"), ["benchmarks", "tools"]),
}


@pytest.mark.parametrize("layer", list(RULES))
def test_layers_only_point_down(layer):
    paths, forbidden = RULES[layer]
    assert paths
    assert offenders(paths, forbidden) == {}


def test_no_sys_path_edits_in_tools_or_the_library():
    """(The one exception: the code a study's child process runs puts this checkout first, partial_study.py.)"""
    edits = [osp.relpath(p, ROOT) for p in files("tools") + files("mae_backbone") + files("downstream")
             if any(e in open(p).read() for e in ("sys.path.insert", "sys.path.append", "sys.path.extend",
                                                    "sys.path[:0]", "site.addsitedir"))]
    assert edits == []


def test_benchmarks_are_not_installed():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(osp.join(ROOT, "setup.cfg"))
    include = cfg["options.packages.find"]["include"].split()
    assert not [p for p in include if p.startswith("benchmarks")]
    assert not osp.exists(osp.join(ROOT, "mae_backbone", "benchmark.py"))

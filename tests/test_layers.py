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
    rel = osp.relpath(path, ROOT)[:-3].split(os.sep)
    package = rel[:-1] if rel[-1] != "__init__" else rel[:-1]
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                out |= {mod} | ({f"{mod}.{a.name}" for a in node.names} if not node.module else set())
            else:
                out.add(node.module)
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
    edits = [osp.relpath(p, ROOT) for p in files("tools") + files("mae_backbone") + files("downstream")
             if "sys.path.insert" in open(p).read() or "sys.path.append" in open(p).read()]
    assert edits == []


def test_benchmarks_are_not_installed():
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(osp.join(ROOT, "setup.cfg"))
    include = cfg["options.packages.find"]["include"].split()
    assert not [p for p in include if p.startswith("benchmarks")]
    assert not osp.exists(osp.join(ROOT, "mae_backbone", "benchmark.py"))

"""Which mmcv 2.1.0 build this machine needs (CPU ops or CUDA ops, for which GPUs), and whether it is installed.

    python tools/install/mmcv_build.py plan        # shell `export` lines for build_mmcv.sh (errors name the fix)
    python tools/install/mmcv_build.py installed   # exit 0 when the installed mmcv is the planned build
    python tools/install/mmcv_build.py record      # after installing: remember which build this environment has

The decision (:func:`plan`, a pure function of the machine's facts and the environment, tested):

* ``MMCV_CUDA=1``: CUDA ops, also on a build host without a GPU; needs a CUDA build of torch and a CUDA
  toolkit (``nvcc`` under ``CUDA_HOME``, on ``PATH`` or in /usr/local/cuda: the one torch's extension
  builder uses). ``MMCV_CUDA=0``: CPU ops.
* unset: CUDA ops when torch is a CUDA build, a toolkit is found and a GPU is visible; CPU ops otherwise.
* GPU architectures: ``TORCH_CUDA_ARCH_LIST`` when set, else the visible GPUs' compute capabilities, else
  :data:`DEFAULT_ARCHS`. nvcc 13 cannot target compute capability < 7.5 (V100 is 7.0): such GPUs need a
  CUDA 12 build of torch and a CUDA 12 toolkit (docs/install.md).
* nvcc's major version must equal torch's CUDA major version (torch's extension builder refuses others).
* ``MAX_JOBS``: from the environment, else the CPU count, at most one job per 2 GiB of memory (nvcc jobs).

The build key (torch version, Python, CPU or CUDA version + architectures) names the wheel cache folder and is
recorded next to the installed mmcv, so a CPU-ops wheel is never reused on a GPU machine, nor the reverse. An
installed CUDA build serves a machine when torch, Python and the CUDA version match and its architectures run on
every visible GPU (the same major version at an equal or lower minor, or PTX at or below the GPU's), so a
multi-architecture build made on a login node serves the GPU nodes of a shared environment; a CUDA build (it holds
the CPU kernels too) also serves a machine without a GPU unless ``MMCV_CUDA=0``.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

# Turing (T4), Ampere (A100, A10 / RTX 30), Hopper (H100 / H200); +PTX lets later GPUs (Blackwell) JIT-compile.
# 8.9 (L4, L40, RTX 40) runs the 8.6 binaries.
DEFAULT_ARCHS = "7.5;8.0;8.6;9.0+PTX"
RECORD_NAME = "mmcv-build.json"


class PlanError(Exception):
    """The machine cannot build what was asked; the message names the fix."""


# TORCH_CUDA_ARCH_LIST's names, as torch.utils.cpp_extension expands them
NAMED_ARCHS = {"Turing": "7.5+PTX", "Ampere+Tegra": "8.7", "Ampere": "8.0;8.6+PTX", "Ada": "8.9+PTX",
               "Hopper": "9.0+PTX", "Blackwell+Tegra": "11.0", "Blackwell": "10.0;10.3;12.0;12.1+PTX",
               "Volta+Tegra": "7.2", "Volta": "7.0+PTX", "Pascal": "6.0;6.1+PTX"}


def _expand_arch_list(arch_list: str) -> List[str]:
    out = []
    for a in re.split(r"[;\s]+", arch_list.strip()):
        out += NAMED_ARCHS[a].split(";") if a in NAMED_ARCHS else ([a] if a else [])
    return out


def _parse_arch(arch: str) -> Tuple[int, int, bool, bool]:
    """``'9.0+PTX'`` -> (9, 0, ptx=True, arch_specific=False); ``'9.0a'`` -> (9, 0, False, True)."""
    m = re.fullmatch(r"(\d+)\.(\d+)(a?)(\+PTX)?", arch.strip())
    if not m:
        raise PlanError(f"TORCH_CUDA_ARCH_LIST entry {arch!r} is not like '8.0' or '9.0+PTX'")
    return int(m.group(1)), int(m.group(2)), bool(m.group(4)), bool(m.group(3))


def _arch_value(arch: str) -> float:
    major, minor, _, _ = _parse_arch(arch)
    return major + minor / 10


def runs_on(archs: Sequence[str], gpu: Tuple[int, int]) -> bool:
    """Whether code built for ``archs`` runs on a GPU of compute capability ``gpu``: machine code of the same major
    version and an equal or lower minor (``a`` variants: that exact GPU only), or PTX for an equal or lower one."""
    for arch in archs:
        major, minor, ptx, specific = _parse_arch(arch)
        if (major, minor) == tuple(gpu) or (ptx and not specific and (major, minor) <= tuple(gpu)):
            return True
        if not specific and major == gpu[0] and minor <= gpu[1]:
            return True
    return False


def _major(version: Optional[str]) -> Optional[int]:
    return int(version.split(".")[0]) if version else None


def plan(facts: Dict, env: Dict[str, str]) -> Dict:
    """The build for this machine. ``facts``: ``torch`` (version), ``torch_cuda`` (torch's CUDA version or None),
    ``python`` (e.g. ``'311'``), ``gpus`` (compute capabilities, e.g. ``[(9, 0)]``), ``nvcc`` (path or None),
    ``nvcc_version`` (``'13.0'`` or None), ``cpus``, ``mem_gib``. ``env``: the environment variables.
    ``cuda_lib_includes``: header folders of the CUDA libraries torch's wheel ships (``nvidia/*/include``);
    ``cuda_home``: the toolkit's root folder.
    Returns ``dict(cuda, arch_list, max_jobs, key, reason, include_path, cuda_home)``; raises :class:`PlanError` naming
    the fix. ``include_path`` (CUDA builds) goes after the toolkit's own headers: a toolkit with nvcc and the
    runtime only (no cuSPARSE / cuBLAS headers, which torch's CUDA headers include) builds with pip's."""
    choice = env.get("MMCV_CUDA", "").strip()
    if choice not in ("", "0", "1"):
        raise PlanError(f"MMCV_CUDA={choice!r}: use MMCV_CUDA=1 (CUDA ops) or MMCV_CUDA=0 (CPU ops), or leave it unset")
    torch_cuda, nvcc, gpus = facts.get("torch_cuda"), facts.get("nvcc"), list(facts.get("gpus") or [])
    bad_home = facts.get("bad_cuda_home")
    if bad_home and (choice == "1" or (choice == "" and torch_cuda and gpus)):
        raise PlanError(f"{bad_home} has no bin/nvcc: point CUDA_HOME (or CUDA_PATH) at the CUDA toolkit's folder, or "
                        f"unset it to use the nvcc on PATH or in /usr/local/cuda")
    if choice == "1":
        if not torch_cuda:
            raise PlanError(f"MMCV_CUDA=1 but torch {facts['torch']} is a CPU build: install a CUDA build of torch "
                            f"(docs/install.md lists which wheel fits which driver)")
        if not nvcc:
            raise PlanError("MMCV_CUDA=1 but no CUDA toolkit was found: install one whose major version is torch's "
                            f"CUDA {torch_cuda}, and set CUDA_HOME or put its nvcc on PATH")
        cuda, reason = True, "MMCV_CUDA=1"
    elif choice == "0":
        cuda, reason = False, "MMCV_CUDA=0"
    elif torch_cuda and nvcc and gpus:
        cuda, reason = True, f"{len(gpus)} GPU(s) visible, torch CUDA {torch_cuda}, nvcc {facts.get('nvcc_version')}"
    else:
        missing = [what for what, ok in (("a CUDA build of torch", torch_cuda), ("a CUDA toolkit (nvcc)", nvcc),
                                         ("a visible GPU", gpus)) if not ok]
        cuda, reason = False, "no " + " / ".join(m.split(" ", 1)[1] if m.startswith("a ") else m for m in missing)
        if gpus and not nvcc:
            reason += ("; WARNING: this machine has a GPU, but mmcv's RoIAlign / NMS will have no CUDA kernels: "
                       "install a CUDA toolkit and rerun (docs/install.md), or set MMCV_CUDA=0 to build CPU ops")
        if gpus and not torch_cuda:
            reason += ("; WARNING: this machine has a GPU, but torch is a CPU build: install a CUDA build of torch "
                       "(docs/install.md) and rerun")
    key = f"torch{facts['torch'].replace('+', '_')}-py{facts['python']}"  # 2.14.1+cu130 and 2.14.1+cpu differ
    out = dict(cuda=cuda, arch_list=None, archs=[], gpus=gpus, max_jobs=_max_jobs(facts, env), reason=reason,
               include_path="", cuda_home=None, forced=bool(choice))
    if not cuda:
        return dict(out, key=key + "-cpu", base=key + "-cpu")
    if _major(facts.get("nvcc_version")) != _major(torch_cuda):
        raise PlanError(f"nvcc {facts.get('nvcc_version')} ({nvcc}) does not match torch's CUDA {torch_cuda}: "
                        f"install a CUDA {_major(torch_cuda)}.x toolkit (set CUDA_HOME to it), or a torch built "
                        f"for CUDA {_major(facts.get('nvcc_version'))}")
    arch_list = env.get("TORCH_CUDA_ARCH_LIST", "").strip() or (
        ";".join(f"{a}.{b}" for a, b in sorted(set(map(tuple, gpus)))) if gpus else DEFAULT_ARCHS)
    archs = _expand_arch_list(arch_list)
    if env.get("TORCH_CUDA_ARCH_LIST", "").strip() == "native":
        raise PlanError("TORCH_CUDA_ARCH_LIST=native: leave it unset instead, the visible GPUs are used then")
    too_old = [a for a in archs if _arch_value(a) < 7.5]
    if too_old and _major(facts.get("nvcc_version")) >= 13:
        raise PlanError(f"CUDA {facts.get('nvcc_version')} cannot build for compute capability {', '.join(too_old)} "
                        f"(its minimum is 7.5): V100 / P100 need a CUDA 12 torch and a CUDA 12 toolkit "
                        f"(docs/install.md, 'Older GPUs')")
    tag = "-".join(a.replace(".", "").replace("+PTX", "ptx").lower() for a in archs)
    return dict(out, arch_list=";".join(archs), archs=archs, base=f"{key}-cu{torch_cuda}",
                key=f"{key}-cu{torch_cuda}-sm{tag}", include_path=os.pathsep.join(facts.get("cuda_lib_includes") or []),
                cuda_home=facts.get("cuda_home"))


def _max_jobs(facts: Dict, env: Dict[str, str]) -> int:
    if env.get("MAX_JOBS", "").strip():
        if not env["MAX_JOBS"].strip().isdigit():
            raise PlanError(f"MAX_JOBS={env['MAX_JOBS']!r}: give a number of parallel compile jobs, or leave it unset")
        return max(1, int(env["MAX_JOBS"]))
    cpus = max(1, int(facts.get("cpus") or 1))
    mem = facts.get("mem_gib")
    return max(1, min(cpus, int(mem // 2))) if mem else cpus


# ----------------------------------------------------------------------------- facts of this machine
def _nvcc_version(nvcc: str) -> Optional[str]:
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", out)
    return m.group(1) if m else None


def _toolkit_root(nvcc: str) -> Optional[str]:
    """The CUDA toolkit an ``nvcc`` belongs to, also when ``nvcc`` is a wrapper script elsewhere (its dry run
    names its real folder), so torch's extension builder finds the toolkit's headers and libraries."""
    try:
        out = subprocess.run([nvcc, "--dryrun", "-c", "probe.cu"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^#\$ _HERE_=(.+)$", out.stdout + out.stderr, re.M)
    here = m.group(1).strip() if m else os.path.dirname(os.path.realpath(nvcc))
    return os.path.dirname(os.path.normpath(here))


def _find_nvcc() -> Tuple[Optional[str], Optional[str]]:
    """The nvcc torch's extension builder will run (CUDA_HOME / CUDA_PATH, else nvcc on PATH, else /usr/local/cuda:
    torch.utils.cpp_extension's own search order), and ``'CUDA_HOME=...'`` when that variable names a folder
    without one (torch would use it all the same)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        home = os.environ.get(var)
        if home:
            path = os.path.join(home, "bin", "nvcc")
            return (path, None) if os.access(path, os.X_OK) else (None, f"{var}={home}")
    path = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    return (path if os.access(path, os.X_OK) else None), None


def _nvidia_smi_gpus() -> List[Tuple[int, int]]:
    """Compute capabilities of the GPUs the driver sees (for a CPU build of torch, which cannot tell)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [tuple(int(x) for x in ln.strip().split(".")) for ln in out.splitlines() if re.fullmatch(r"\d+\.\d+", ln.strip())]


def _mem_gib() -> Optional[float]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    except (ValueError, OSError, AttributeError):
        return None


def machine_facts() -> Dict:
    """This machine, as :func:`plan` needs it (imports torch)."""
    import torch

    if torch.version.cuda:
        gpus = [tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count())] \
            if torch.cuda.is_available() else []
    else:
        gpus = _nvidia_smi_gpus()
    nvcc, bad_home = _find_nvcc()
    site = os.path.dirname(os.path.dirname(torch.__file__))
    includes = sorted(glob.glob(os.path.join(site, "nvidia", "*", "include")))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return dict(torch=torch.__version__, torch_cuda=torch.version.cuda, python=f"{sys.version_info[0]}{sys.version_info[1]}",
                gpus=gpus, nvcc=nvcc, nvcc_version=_nvcc_version(nvcc) if nvcc else None, cpus=cpus, mem_gib=_mem_gib(),
                cuda_lib_includes=includes, cuda_home=_toolkit_root(nvcc) if nvcc else None, bad_cuda_home=bad_home)


# ----------------------------------------------------------------------------- the installed build
def _record_path() -> str:
    return os.path.join(sys.prefix, RECORD_NAME)


def _installed_ops() -> Optional[Dict]:
    """The installed mmcv's compiled extension (path, size, mtime) and its CUDA version, or None."""
    try:
        import mmcv
        from mmcv import _ext
        from mmcv.ops import get_compiling_cuda_version
    except Exception:  # noqa: BLE001  (any import failure means: not usable, rebuild)
        return None
    if mmcv.__version__ != "2.1.0":
        return None
    path = getattr(_ext, "__file__", "")
    st = os.stat(path) if path and os.path.exists(path) else None
    return dict(ext=path, size=st.st_size if st else None, mtime=int(st.st_mtime) if st else None,
                cuda=get_compiling_cuda_version())


def _serves(rec: Dict, p: Dict) -> Tuple[bool, str]:
    """Whether the recorded build serves plan ``p`` (see the module docstring)."""
    base = rec.get("base") or rec.get("key")
    if not p["cuda"] and (rec.get("archs") or []):  # a CUDA build on a machine without a GPU: torch and Python
        same = base.rsplit("-cu", 1)[0] == p["base"].rsplit("-cpu", 1)[0]
        return same, "" if same else f"the installed build is {rec.get('key')}, this machine needs {p['key']}"
    if base != p["base"]:
        return False, f"the installed build is {rec.get('key')}, this machine needs {p['key']}"
    if not p["cuda"]:
        return True, ""
    archs = rec.get("archs") or []
    if p["gpus"]:
        missed = [g for g in p["gpus"] if not runs_on(archs, g)]
        if missed:
            return False, (f"the installed build ({';'.join(archs)}) has no code for compute capability "
                           f"{', '.join(f'{a}.{b}' for a, b in missed)}")
        return True, ""
    missing = [a for a in p["archs"] if a not in archs]  # a build host: the architectures asked for
    return (not missing, f"the installed build ({';'.join(archs)}) lacks {';'.join(missing)}" if missing else "")


def installed_matches(p: Dict) -> Tuple[bool, str]:
    """Whether the installed mmcv serves plan ``p``: its ops were compiled with / without CUDA as planned, and the
    build recorded for this very extension file (by ``record``) serves the plan (:func:`_serves`)."""
    ops = _installed_ops()
    if ops is None:
        return False, "no usable mmcv 2.1.0 with compiled ops"
    cuda_ops = ops["cuda"] != "not available"
    # a CUDA build also holds every CPU kernel: it serves a machine without a GPU (a shared environment's login
    # node) unless MMCV_CUDA=0 asks for CPU ops; a CPU build never serves a GPU machine
    if cuda_ops != p["cuda"] and not (cuda_ops and not p["cuda"] and not p["forced"]):
        how = "with CUDA " + ops["cuda"] if cuda_ops else "without CUDA"
        return False, f"the installed mmcv's ops were compiled {how}"
    try:
        with open(_record_path()) as f:
            rec = json.load(f)
    except (OSError, ValueError):
        # built elsewhere (an existing OpenMMLab environment, or before builds were recorded): its ops import
        # against this torch and match the plan's CPU / CUDA choice; the GPU architectures cannot be checked
        return True, (f"mmcv 2.1.0 with {'CUDA ' + ops['cuda'] if p['cuda'] else 'CPU'} ops already installed "
                      f"(not built by this script: its GPU architectures are unknown)")
    if any(rec.get(k) != ops[k] for k in ("ext", "size", "mtime")):
        return False, "mmcv was reinstalled since its build was recorded"
    ok, why = _serves(rec, p)
    return (True, f"mmcv 2.1.0 build {rec['key']} already installed") if ok else (False, why)


def record(p: Dict) -> None:
    """Remember (atomically) that this environment's mmcv is the build of plan ``p``; refuses an installed mmcv
    whose ops were not compiled as planned (mmcv's setup.py builds CUDA ops whenever torch sees a GPU)."""
    ops = _installed_ops()
    if ops is None:
        raise SystemExit("mmcv 2.1.0 with ops does not import: nothing to record")
    if (ops["cuda"] != "not available") != p["cuda"]:
        raise SystemExit(f"the mmcv just installed has ops compiled {'with' if p['cuda'] is False else 'without'} "
                         f"CUDA, but {p['key']} was planned: not recording it")
    tmp = _record_path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(dict(key=p["key"], base=p["base"], archs=p["archs"], **ops), f)
    os.replace(tmp, _record_path())


def main(argv: Sequence[str]) -> int:
    cmd = argv[0] if argv else "plan"
    try:
        p = plan(machine_facts(), dict(os.environ))
    except PlanError as e:
        print(f"mmcv build: {e}", file=sys.stderr)
        return 2
    if cmd == "plan":
        for k, v in (("MMCV_BUILD_KEY", p["key"]), ("MMCV_BUILD_CUDA", int(p["cuda"])),
                     ("MMCV_BUILD_ARCHS", p["arch_list"] or ""), ("MMCV_BUILD_JOBS", p["max_jobs"]),
                     ("MMCV_BUILD_INCLUDE", p["include_path"]), ("MMCV_BUILD_CUDA_HOME", p["cuda_home"] or ""),
                     ("MMCV_BUILD_REASON", p["reason"])):
            print(f"export {k}={shlex.quote(str(v))}")
        return 0
    if cmd == "installed":
        ok, why = installed_matches(p)
        print(why)
        return 0 if ok else 1
    if cmd == "record":
        record(p)
        return 0
    print(f"unknown command {cmd!r}: plan, installed or record", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

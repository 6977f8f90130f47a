"""The mmcv build decision (tools/install/mmcv_build.py) under simulated machines, the record that keeps a CPU-ops
build off GPU machines (and the reverse), the compiler wrappers, and build_mmcv.sh's early exits."""
from __future__ import annotations

import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.join(osp.dirname(osp.abspath(__file__)), "..")
INSTALL = osp.join(ROOT, "tools", "install")
_spec = importlib.util.spec_from_file_location("mmcv_build", osp.join(INSTALL, "mmcv_build.py"))
mb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mb)

CPU_BOX = dict(torch="2.14.1+cu130", torch_cuda="13.0", python="311", gpus=[], nvcc="/usr/local/cuda/bin/nvcc",
               nvcc_version="13.0", cpus=2, mem_gib=24, cuda_home="/usr/local/cuda-13.0",
               cuda_lib_includes=["/venv/site-packages/nvidia/cu13/include"])
H200_BOX = dict(CPU_BOX, gpus=[(9, 0)], cpus=16, mem_gib=128)


def test_cpu_machine_with_a_toolkit_builds_cpu_ops():
    p = mb.plan(CPU_BOX, {})
    assert (p["cuda"], p["arch_list"], p["key"], p["max_jobs"]) == (False, None, "torch2.14.1_cu130-py311-cpu", 2)
    assert "no visible GPU" in p["reason"] and p["include_path"] == ""


def test_gpu_machine_builds_cuda_ops_for_its_gpus():
    p = mb.plan(H200_BOX, {})
    assert (p["cuda"], p["arch_list"], p["key"]) == (True, "9.0", "torch2.14.1_cu130-py311-cu13.0-sm90")
    assert p["max_jobs"] == 16 and p["cuda_home"] == "/usr/local/cuda-13.0"
    assert p["include_path"] == "/venv/site-packages/nvidia/cu13/include"
    mixed = mb.plan(dict(H200_BOX, gpus=[(8, 0), (9, 0), (8, 0)]), {})
    assert mixed["arch_list"] == "8.0;9.0" and mixed["key"].endswith("-sm80-90")


def test_keys_never_let_one_build_stand_for_another():
    keys = {mb.plan(CPU_BOX, {})["key"], mb.plan(H200_BOX, {})["key"],
            mb.plan(dict(H200_BOX, gpus=[(8, 0)]), {})["key"],
            mb.plan(dict(H200_BOX, torch="2.13.0+cu130"), {})["key"],
            mb.plan(dict(H200_BOX, python="312"), {})["key"],
            mb.plan(dict(CPU_BOX, torch="2.14.1+cpu", torch_cuda=None), {})["key"]}  # the CPU wheel of one release
    assert len(keys) == 6


def test_build_host_without_gpu_forces_cuda_with_the_default_archs():
    p = mb.plan(CPU_BOX, {"MMCV_CUDA": "1"})
    assert p["cuda"] and p["arch_list"] == mb.DEFAULT_ARCHS == "7.5;8.0;8.6;9.0+PTX"
    assert p["key"] == "torch2.14.1_cu130-py311-cu13.0-sm75-80-86-90ptx" and p["reason"] == "MMCV_CUDA=1"
    env = {"MMCV_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "8.0 9.0+PTX"}
    assert mb.plan(CPU_BOX, env)["arch_list"] == "8.0;9.0+PTX"  # spaces or semicolons, as torch accepts


def test_explicit_cpu_build_on_a_gpu_machine():
    p = mb.plan(H200_BOX, {"MMCV_CUDA": "0"})
    assert not p["cuda"] and p["key"].endswith("-cpu") and p["reason"] == "MMCV_CUDA=0"


@pytest.mark.parametrize("facts, env, match", [
    (dict(CPU_BOX, torch="2.14.1+cpu", torch_cuda=None), {"MMCV_CUDA": "1"}, "is a CPU build: install a CUDA build"),
    (dict(CPU_BOX, nvcc=None, nvcc_version=None), {"MMCV_CUDA": "1"}, "no CUDA toolkit was found"),
    (CPU_BOX, {"MMCV_CUDA": "yes"}, "use MMCV_CUDA=1 .* or MMCV_CUDA=0"),
    (dict(H200_BOX, nvcc_version="12.4"), {}, r"nvcc 12.4 .* does not match torch's CUDA 13.0"),
    (dict(H200_BOX, gpus=[(7, 0)]), {}, "cannot build for compute capability 7.0 .* V100 / P100 need a CUDA 12"),
    (H200_BOX, {"TORCH_CUDA_ARCH_LIST": "7.0;8.0"}, "cannot build for compute capability 7.0"),
    (H200_BOX, {"TORCH_CUDA_ARCH_LIST": "sm_90"}, "is not like '8.0'"),
])
def test_impossible_builds_are_refused_naming_the_fix(facts, env, match):
    with pytest.raises(mb.PlanError, match=match):
        mb.plan(facts, env)


def test_v100_builds_with_cuda_12():
    box = dict(H200_BOX, torch="2.6.0+cu126", torch_cuda="12.6", nvcc_version="12.6", gpus=[(7, 0)])
    p = mb.plan(box, {})
    assert p["arch_list"] == "7.0" and p["key"] == "torch2.6.0_cu126-py311-cu12.6-sm70"


def test_gpu_without_toolkit_builds_cpu_ops_with_a_warning():
    p = mb.plan(dict(H200_BOX, nvcc=None, nvcc_version=None), {})
    assert not p["cuda"] and "WARNING" in p["reason"] and "no CUDA kernels" in p["reason"]


def test_parallel_jobs_from_cores_and_memory():
    assert mb.plan(dict(H200_BOX, cpus=64, mem_gib=32), {})["max_jobs"] == 16  # 2 GiB per nvcc job
    assert mb.plan(H200_BOX, {"MAX_JOBS": "3"})["max_jobs"] == 3
    assert mb.plan(dict(CPU_BOX, mem_gib=None), {})["max_jobs"] == 2


def test_this_machine_facts():
    import torch
    facts = mb.machine_facts()
    assert facts["torch"] == torch.__version__ and facts["torch_cuda"] == torch.version.cuda
    assert isinstance(facts["gpus"], list) and facts["cpus"] >= 1
    if facts["nvcc"]:
        assert facts["nvcc_version"] and osp.isfile(osp.join(facts["cuda_home"], "bin", "nvcc"))
    mb.plan(facts, {})  # a decision, whatever the machine (or PlanError naming a fix: not on ours)


# ----------------------------------------------------------------------------- the installed build
@pytest.fixture
def installed(monkeypatch, tmp_path):
    """Simulate the installed mmcv (``ops`` dict or None) and put the build record in ``tmp_path``."""
    record = tmp_path / mb.RECORD_NAME
    monkeypatch.setattr(mb, "_record_path", lambda: str(record))

    def set_ops(ops):
        monkeypatch.setattr(mb, "_installed_ops", lambda: ops)
    return set_ops, record


def test_installed_build_must_serve_the_plan(installed):
    set_ops, record = installed
    cpu_plan, h200_plan = mb.plan(CPU_BOX, {}), mb.plan(H200_BOX, {})
    cpu_ops = dict(ext="/venv/mmcv/_ext.so", size=100, mtime=5, cuda="not available")
    set_ops(None)
    assert mb.installed_matches(cpu_plan) == (False, "no usable mmcv 2.1.0 with compiled ops")
    set_ops(cpu_ops)
    ok, why = mb.installed_matches(h200_plan)  # CPU ops on a GPU machine: rebuild
    assert not ok and "without CUDA" in why
    set_ops(dict(cpu_ops, cuda="13.0"))
    ok, why = mb.installed_matches(mb.plan(CPU_BOX, {"MMCV_CUDA": "0"}))  # CPU ops asked for: rebuild
    assert not ok and "with CUDA 13.0" in why
    assert mb.installed_matches(cpu_plan)[0]  # a CUDA build also holds the CPU kernels (a shared env's login node)
    set_ops(cpu_ops)
    ok, why = mb.installed_matches(cpu_plan)  # built elsewhere, no record: accepted, said so
    assert ok and "not built by this script" in why
    mb.record(cpu_plan)
    assert json.loads(record.read_text())["key"] == "torch2.14.1_cu130-py311-cpu"
    assert mb.installed_matches(cpu_plan)[0]
    ok, why = mb.installed_matches(mb.plan(dict(CPU_BOX, torch="2.15.0"), {}))  # another torch: rebuild
    assert not ok and "torch2.14.1_cu130-py311-cpu" in why and "torch2.15.0-py311-cpu" in why
    set_ops(dict(cpu_ops, mtime=6))  # reinstalled by hand since
    assert mb.installed_matches(cpu_plan) == (False, "mmcv was reinstalled since its build was recorded")
    with pytest.raises(SystemExit, match="not recording it"):
        mb.record(h200_plan)  # CPU ops installed where CUDA ops were planned (mmcv's setup.py decided otherwise)


def test_a_cuda_build_serves_a_machine_without_gpu_of_the_same_torch(installed):
    set_ops, _ = installed
    set_ops(dict(ext="/venv/mmcv/_ext.so", size=100, mtime=5, cuda="13.0"))
    mb.record(mb.plan(H200_BOX, {}))
    assert mb.installed_matches(mb.plan(CPU_BOX, {}))[0]
    ok, why = mb.installed_matches(mb.plan(dict(CPU_BOX, python="312"), {}))
    assert not ok and "py312" in why


def test_a_multi_architecture_build_serves_each_gpu_it_covers(installed):
    """A login node's MMCV_CUDA=1 build (7.5;8.0;8.6;9.0+PTX) in a shared environment serves H100 and L4 nodes,
    not a V100 one; a single-architecture build serves only its own."""
    set_ops, _ = installed
    set_ops(dict(ext="/venv/mmcv/_ext.so", size=100, mtime=5, cuda="13.0"))
    mb.record(mb.plan(CPU_BOX, {"MMCV_CUDA": "1"}))
    for cc, ok in (((9, 0), True), ((8, 9), True), ((8, 0), True), ((10, 0), True), ((7, 5), True)):
        assert mb.installed_matches(mb.plan(dict(H200_BOX, gpus=[cc]), {}))[0] is ok, cc
    mb.record(mb.plan(H200_BOX, {}))  # sm_90 only
    ok, why = mb.installed_matches(mb.plan(dict(H200_BOX, gpus=[(8, 0)]), {}))
    assert not ok and "no code for compute capability 8.0" in why
    assert mb.installed_matches(mb.plan(CPU_BOX, {"MMCV_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "9.0"}))[0]
    ok, why = mb.installed_matches(mb.plan(CPU_BOX, {"MMCV_CUDA": "1"}))  # the build host asks for more
    assert not ok and "lacks 7.5;8.0;8.6;9.0+PTX" in why


@pytest.mark.parametrize("archs, gpu, ok", [
    (["8.0"], (8, 6), True), (["8.6"], (8, 0), False), (["9.0"], (10, 0), False), (["9.0+PTX"], (12, 0), True),
    (["9.0a"], (9, 0), True), (["8.0a"], (8, 6), False), (["7.5", "8.6"], (8, 9), True),
    (["9.0a+PTX"], (10, 0), False), (["8.6+PTX"], (8, 0), False)])
def test_runs_on(archs, gpu, ok):
    assert mb.runs_on(archs, gpu) is ok


def test_cuda_home_without_nvcc_is_named(monkeypatch):
    with pytest.raises(mb.PlanError, match="CUDA_HOME=/nope has no bin/nvcc"):
        mb.plan(dict(H200_BOX, nvcc=None, bad_cuda_home="CUDA_HOME=/nope"), {})
    assert not mb.plan(dict(CPU_BOX, nvcc=None, bad_cuda_home="CUDA_HOME=/nope"), {})["cuda"]  # CPU ops: irrelevant
    monkeypatch.setenv("CUDA_HOME", "/nope")
    assert mb._find_nvcc() == (None, "CUDA_HOME=/nope")


def test_gpu_with_cpu_torch_warns():
    p = mb.plan(dict(H200_BOX, torch="2.14.1+cpu", torch_cuda=None), {})
    assert not p["cuda"] and "torch is a CPU build" in p["reason"]
    with pytest.raises(mb.PlanError, match="MAX_JOBS='auto'"):
        mb.plan(CPU_BOX, {"MAX_JOBS": "auto"})


def _run_wrapper(tmp_path, wrapper: str, real_var: str, args):
    fake = tmp_path / "fake"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    fake.chmod(0o755)
    out = subprocess.run([osp.join(INSTALL, wrapper), *args], env=dict(os.environ, **{real_var: str(fake)}),
                         capture_output=True, text=True, check=True)
    return out.stdout.split("\n")[:-1]


@pytest.mark.parametrize("wrapper, var", [("nvcc20", "REAL_NVCC"), ("cxx20", "REAL_CXX")])
def test_compiler_wrappers_raise_the_language_standard_only(tmp_path, wrapper, var):
    args = ["-O3", "-std=c++17", "-DX=1", "-I/a b", "-std=c++14", "-gencode=arch=compute_90,code=sm_90"]
    assert _run_wrapper(tmp_path, wrapper, var, args) == ["-O3", "-std=c++20", "-DX=1", "-I/a b", "-std=c++20",
                                                          "-gencode=arch=compute_90,code=sm_90"]


def test_build_script_refuses_before_building_and_exits_early_when_installed(tmp_path):
    env = dict(os.environ, PY=sys.executable, MMCV_WHEEL_CACHE=str(tmp_path / "cache"))
    env.pop("MMCV_CUDA", None)
    env.pop("TORCH_CUDA_ARCH_LIST", None)
    script = osp.join(INSTALL, "build_mmcv.sh")
    # compute capability 6.0 is refused by every route: CPU torch, no toolkit, or nvcc >= 13 (< 13: 6.0 is fine)
    refused = subprocess.run(["bash", script], env=dict(env, MMCV_CUDA="1", TORCH_CUDA_ARCH_LIST="6.0"),
                             capture_output=True, text=True, timeout=300)
    facts = mb.machine_facts()
    if not (facts["torch_cuda"] and facts["nvcc"] and int(facts["nvcc_version"].split(".")[0]) < 13):
        assert refused.returncode == 2 and refused.stderr.startswith("mmcv build: "), refused.stderr
        assert not (tmp_path / "cache").exists()  # refused before anything was built
    pytest.importorskip("mmcv.ops")
    if not mb.installed_matches(mb.plan(facts, env))[0]:
        pytest.skip("this environment's mmcv is not the build this machine needs: `make install` rebuilds it")
    done = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "already installed" in done.stdout, done.stdout + done.stderr


def test_named_architectures_expand_as_torch_does():
    p = mb.plan(CPU_BOX, {"MMCV_CUDA": "1", "TORCH_CUDA_ARCH_LIST": "Ampere;Hopper"})
    assert p["archs"] == ["8.0", "8.6+PTX", "9.0+PTX"]
    with pytest.raises(mb.PlanError, match="native: leave it unset"):
        mb.plan(H200_BOX, {"TORCH_CUDA_ARCH_LIST": "native"})

#!/usr/bin/env bash
# Build (once per machine kind) and install mmcv 2.1.0 with the ops this machine needs into the active
# environment: CUDA ops on a GPU machine with a CUDA toolkit, CPU ops otherwise (tools/install/mmcv_build.py
# decides and explains; MMCV_CUDA=1|0 overrides, TORCH_CUDA_ARCH_LIST and MAX_JOBS are honoured).
# mmdet 3.3 / mmseg 1.2 assert mmcv < 2.2, and no mmcv 2.1 wheel exists for today's torch, so we compile the
# PyPI sdist. The wheel is cached per build key (torch version, Python, CPU or CUDA version + GPU
# architectures): pip's own cache keys it by source URL only and would hand a wheel built against another
# torch, or without CUDA ops, to a new environment.
set -euo pipefail
PY=${PY:-python}
here=$(cd "$(dirname "$0")" && pwd)
plan=$($PY "$here/mmcv_build.py" plan)  # exits non-zero with the fix when the machine cannot build what is asked
eval "$plan"
case "$MMCV_BUILD_REASON" in *WARNING*) echo "mmcv: ${MMCV_BUILD_REASON#*; }" >&2 ;; esac
if status=$($PY "$here/mmcv_build.py" installed); then
  echo "$status"; exit 0
fi
echo "mmcv: $status; build $MMCV_BUILD_KEY ($MMCV_BUILD_REASON)"
cache=${MMCV_WHEEL_CACHE:-${HOME:-$PWD}/.cache/mae-backbone/mmcv-wheels}/$MMCV_BUILD_KEY
mkdir -p "$cache"
if ! ls "$cache"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
  export MMCV_WITH_OPS=1 MAX_JOBS=$MMCV_BUILD_JOBS
  # torch >= 2.10 headers need C++20 and mmcv's setup.py appends -std=c++14/17 (last flag wins): the wrappers
  # rewrite it, for g++ (CXX) and for nvcc (PYTORCH_NVCC, read by torch's ninja build)
  export REAL_CXX=${REAL_CXX:-${CXX:-g++}}
  export CXX="$here/cxx20" CFLAGS="-O3 -DNDEBUG -g0 -fwrapv -Wno-sign-compare" CXXFLAGS="-O3 -DNDEBUG -g0"
  run=(env)
  if [ "$MMCV_BUILD_CUDA" = 1 ]; then
    export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$MMCV_BUILD_ARCHS"
    export CUDA_HOME="$MMCV_BUILD_CUDA_HOME" REAL_NVCC="$MMCV_BUILD_CUDA_HOME/bin/nvcc"
    export PYTORCH_NVCC="$here/nvcc20"
    # searched after the toolkit's own headers: cuSPARSE / cuBLAS headers from torch's pip CUDA libraries
    if [ -n "$MMCV_BUILD_INCLUDE" ]; then export CPATH="${CPATH:+$CPATH:}$MMCV_BUILD_INCLUDE"; fi
    $PY -m pip install -q ninja  # parallel compilation (MAX_JOBS) needs torch's ninja build
    echo "building mmcv 2.1.0 with CUDA ops for $TORCH_CUDA_ARCH_LIST, $MAX_JOBS jobs: over a hundred CUDA" \
         "kernels per architecture (about 37 CPU-minutes for one) ..."
  else
    export FORCE_CUDA=0
    run+=(CUDA_VISIBLE_DEVICES=)  # mmcv's setup.py builds CUDA ops whenever torch sees a GPU
    echo "building mmcv 2.1.0 with CPU ops, $MAX_JOBS jobs (about 6 minutes on 2 cores) ..."
  fi
  tmp=$(mktemp -d "$cache/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  "${run[@]}" $PY -m pip wheel --no-build-isolation --no-deps --no-binary mmcv --no-cache-dir -w "$tmp" mmcv==2.1.0
  mv "$tmp"/mmcv-2.1.0-*.whl "$cache"/  # a failed build leaves no wheel in the cache
fi
$PY -m pip install -q --no-deps --force-reinstall "$cache"/mmcv-2.1.0-*.whl
if ! $PY "$here/mmcv_build.py" record; then  # ops compiled otherwise than planned: never cache or keep that
  rm -f "$cache"/mmcv-2.1.0-*.whl
  exit 1
fi
$PY -c "import mmcv.ops; print('mmcv', mmcv.__version__, 'ops OK, CUDA:', mmcv.ops.get_compiling_cuda_version())"

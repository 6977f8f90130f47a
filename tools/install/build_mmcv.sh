#!/usr/bin/env bash
# Build (once) and install mmcv 2.1.0 with CPU ops into the active venv.
# mmdet 3.3 / mmseg 1.2 assert mmcv < 2.2, and no mmcv 2.1 wheel exists for today's torch,
# so we compile the PyPI sdist. The built wheel is cached per torch version and Python,
# because pip's own cache keys it by source URL only and would hand a wheel built against
# another torch to a new venv.
set -euo pipefail
PY=${PY:-python}
here=$(cd "$(dirname "$0")" && pwd)
if $PY -c "import mmcv, mmcv.ops, sys; sys.exit(0 if mmcv.__version__ == '2.1.0' else 1)" 2>/dev/null; then
  echo "mmcv 2.1.0 with ops already installed"; exit 0
fi
tag=$($PY -c "import sys, torch; print(f'torch{torch.__version__.split(\"+\")[0]}-py{sys.version_info[0]}{sys.version_info[1]}')")
cache=${MMCV_WHEEL_CACHE:-$HOME/.cache/mae-backbone/mmcv-wheels/$tag}
mkdir -p "$cache"
if ! ls "$cache"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
  echo "building mmcv 2.1.0 from source against $tag (about 6 minutes on 2 cores) ..."
  export MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-2}
  export CXX="$here/cxx20" CFLAGS="-O3 -DNDEBUG -g0 -fwrapv -Wno-sign-compare" CXXFLAGS="-O3 -DNDEBUG -g0"
  $PY -m pip wheel --no-build-isolation --no-deps --no-binary mmcv --no-cache-dir -w "$cache" mmcv==2.1.0
fi
$PY -m pip install --no-deps "$cache"/mmcv-2.1.0-*.whl
$PY -c "import mmcv.ops; print('mmcv', __import__('mmcv').__version__, 'ops OK')"

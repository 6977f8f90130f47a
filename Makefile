# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both create .venv when missing and install everything (idempotent: a stamp file
# records the installed requirement set, so a second run is a no-op). Every run also checks that the
# installed mmcv is the build this machine needs (CUDA ops on a GPU machine with a CUDA toolkit, CPU ops
# otherwise: tools/install/mmcv_build.py), so a .venv moved to, or shared with, another kind of machine
# is rebuilt rather than reused. MMCV_CUDA=1|0 overrides the choice (docs/install.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
REQS   := tools/install/requirements.txt tools/install/requirements-test.txt setup.cfg tools/install/build_mmcv.sh \
          tools/install/mmcv_build.py tools/install/system_data.sh
WORK_DIR ?= work_dirs/demo
PYTEST_ARGS ?=

.PHONY: demo test test-all install mmcv bench clean-venv

install: $(STAMP) mmcv

# a few seconds when the right build is installed (it imports torch and mmcv.ops once)
mmcv: $(STAMP)
	@PY=$(abspath $(PY)) bash tools/install/build_mmcv.sh

$(STAMP): $(REQS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=77.0.3,<81" wheel
	$(PY) -m pip install -q -r tools/install/requirements.txt -r tools/install/requirements-test.txt
	PY=$(abspath $(PY)) bash tools/install/build_mmcv.sh
	$(PY) -m pip install -q mmdet==3.3.0 mmsegmentation==1.2.2
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	bash tools/install/system_data.sh
	$(PY) -c "import torch, timm, mmengine, mmcv.ops, mmdet, mmseg, mae_backbone; print('installed: torch', torch.__version__, '| timm', timm.__version__, '| mmengine', mmengine.__version__, '| mmcv', mmcv.__version__, '| mmdet', mmdet.__version__, '| mmseg', mmseg.__version__)"
	touch $(STAMP)

demo: install
	$(PY) tools/demo.py --work-dir $(WORK_DIR)

test: install
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

test-all: install
	$(PY) -m pytest -q tests --runslow $(PYTEST_ARGS)

# Benchmark peers stay outside .venv (mmpretrain 1.2 breaks `import mmdet.models` next to transformers 5):
# installed without dependencies into .bench-peers/ (with the few it needs that .venv lacks), which only
# the benchmarks put on sys.path; the stamp is written once the peer imports.
BENCH_PEERS := mmpretrain==1.2.0 einops mat4py modelindex model-index ordered-set importlib_metadata==8.7.0 zipp
bench: install
	test -f .bench-peers/.installed || { rm -rf .bench-peers && \
		$(PY) -m pip install -q --target .bench-peers --no-deps $(BENCH_PEERS) && \
		$(PY) -c "from benchmarks.peers import import_mmpretrain_models; import_mmpretrain_models()" && \
		touch .bench-peers/.installed; }
	$(PY) -m benchmarks --quick

clean-venv:
	rm -rf $(VENV)

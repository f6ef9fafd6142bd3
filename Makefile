# Fresh machine to working pcseg in one command: `make demo` or `make test` create .venv,
# install the dependencies, build the native extension and run.
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
DEPS := torch==2.13.0 numpy scipy h5py pyyaml tqdm pillow matplotlib open3d-cpu plyfile pypcd4 laspy lazrs \
        rosbags pytest hypothesis fpsample ninja pye57 onnx onnxruntime opencv-python-headless ruff mypy types-PyYAML
CSRC := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cuh')
EXT := pcseg/_C$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")

.PHONY: all build lint test demo bench cuda-check clean

all: build

# Dependencies. open3d's wheel needs the system's libusb-1.0: installed with apt when we are
# root, else the libusb-package wheel provides it (pcseg preloads it before importing open3d).
$(VENV)/.deps: Makefile
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(DEPS)
	@if ! $(VPY) -c "import open3d" >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || \
	    (apt-get update -q >/dev/null && apt-get install -y -q libusb-1.0-0 >/dev/null); \
	  else $(VPY) -m pip install -q libusb-package; fi; \
	fi
	touch $@

# The editable install registers the `pcseg` command; rebuilt when setup.py changes.
$(VENV)/.editable: $(VENV)/.deps setup.py
	PCSEG_FORCE_CPU=1 $(VPY) -m pip install -q -e . --no-build-isolation --no-deps
	touch $@

# Incremental rebuild of the extension (ninja) when a C++ source changes. The editable install
# above builds the extension in place too; make decided on its timestamps before that, so the
# recipe looks again and compiles only if a source is newer than the extension (else every
# fresh set-up compiled everything twice).
$(EXT): $(VENV)/.editable $(CSRC)
	@if [ ! -f $@ ] || [ -n "$$(find $(CSRC) setup.py -newer $@)" ]; then \
	  echo "PCSEG_FORCE_CPU=1 $(VPY) setup.py -q build_ext --inplace"; \
	  PCSEG_FORCE_CPU=1 $(VPY) setup.py -q build_ext --inplace; \
	else echo "$@ is up to date (built by the editable install)"; fi
	touch $@

build: $(EXT)

# Lint and type check (settings in pyproject.toml): ruff's rules, the formatting, and mypy over
# the public API (pcseg.ops, pcseg.bridge, the Segmenter, the Fuser).
lint: $(VENV)/.deps
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VPY) -m mypy

test: build
	$(VPY) -m pytest -q tests

demo: build
	$(VPY) -m pcseg demo --out demo_out

bench: build
	for f in benchmarks/bm_*.py; do $(VPY) $$f || exit 1; done

cuda-check:
	bash .ci/cuda_compile_check.sh

clean:
	rm -rf build pcseg/*.so $(VENV)/.editable

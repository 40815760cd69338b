# RelCourse: `make course` runs the course end to end, `make test` runs the tests.
# Everything runs from a virtualenv in .venv that this Makefile builds on first use.

PROFILE ?= smoke
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
# Installed FIRST and pinned: the course machines keep a CPU wheel of this release on disk,
# and any torch left to the resolver would pull a CUDA build of several GB.
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KERNEL := relcourse

.PHONY: help $(VENV) setup course test report lab kernel clean refresh-notebooks gpu-check

help:
	@echo "make course [PROFILE=smoke|laptop|gpu|gpu-xl]  run every notebook in order into build/<profile>/"
	@echo "make test                                      unit tests, then nbval over notebooks/ (smoke)"
	@echo "make report [PROFILE=laptop]                   reports/<profile>/ from results/ and runs/ (no training)"
	@echo "make lab                                       register the 'relcourse' kernel, start JupyterLab in notebooks/"
	@echo "make kernel                                    register the 'relcourse' Jupyter kernel only"
	@echo "make refresh-notebooks                         re-execute notebooks/ in place on smoke (committed outputs)"
	@echo "make gpu-check                                 on a CUDA GPU, before PROFILE=gpu: full-size steps, speed, dry run"
	@echo "make clean                                     remove build/ and runs/ (keeps .venv)"

# The virtualenv. The stamp depends on pyproject.toml, so re-runs are instant until it changes.
$(VENV): $(STAMP)
setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e .
	touch $(STAMP)

# papermill (make course) and nbval (make test) both ask for the kernel by this name;
# re-registering is cheap and points it at this .venv's interpreter.
kernel: $(STAMP)
	$(PY) -m ipykernel install --user --name $(KERNEL) --display-name "Python 3 (relcourse)"

course: $(STAMP) kernel
	$(PY) -m relcourse course --profile $(PROFILE)

test: $(STAMP) kernel
	CUDA_VISIBLE_DEVICES= $(PY) -m pytest -q tests --doctest-modules relcourse data_gen
	CUDA_VISIBLE_DEVICES= RELCOURSE_PROFILE=smoke $(PY) -m pytest -q --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-kernel-name $(KERNEL) notebooks/

# The reproduction report: reads the committed results files (and runs/<profile>/claims when
# present), trains nothing. `make report PROFILE=laptop` regenerates the committed reports/laptop/.
report: $(STAMP)
	CUDA_VISIBLE_DEVICES= $(PY) -m relcourse report --profile $(PROFILE)

# Jupyter refuses to start as root unless told; the course machines run as root.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP) kernel
	cd notebooks && $(CURDIR)/$(PY) -m jupyter lab $(LAB_FLAGS)

refresh-notebooks: $(STAMP) kernel
	CUDA_VISIBLE_DEVICES= $(PY) -m relcourse course --refresh

# The GPU's first minutes (benchmarks/gpu_check.py): each stage's full-size step (time, MFU, memory
# against the estimate), our loop and scoring against transformers', and the dry run on the GPU.
gpu-check: $(STAMP)
	cd benchmarks && ../$(PY) gpu_check.py --out ../build/gpu_check

clean:
	rm -rf build runs

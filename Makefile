# keras_bp: `make train` and `make test` each work as the first command on a fresh clone.

PY ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: install data train custom-loop manual parity compare bench profile report worked-example gradient-check \
	test test-slow backends test-backends tutorial docs test-site lint format clean

install: $(STAMP)

# Re-install only when the dependencies change.
$(STAMP): pyproject.toml
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PYTHON) -m pip install --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The JAX and PyTorch backends (optional extras; PyTorch pinned to a CPU build).
BACKENDS_STAMP := $(VENV)/.backends-installed
backends: $(BACKENDS_STAMP)

$(BACKENDS_STAMP): $(STAMP)
	$(PYTHON) -m pip install --disable-pip-version-check -e '.[dev,jax,torch]'
	touch $(BACKENDS_STAMP)

data: install
	$(PYTHON) -m keras_bp.data

train: install
	$(PYTHON) scripts/train.py $(ARGS)

custom-loop: install
	$(PYTHON) scripts/custom_loop.py $(ARGS)

manual: install
	$(PYTHON) scripts/manual_backprop.py $(ARGS)

parity: install
	$(PYTHON) scripts/parity.py $(ARGS)

compare: install
	$(PYTHON) scripts/compare.py $(ARGS)

bench: install
	$(PYTHON) scripts/bench.py $(ARGS)

# Where each microsecond of a step goes, op by op, in TensorFlow's profiler.
profile: install
	$(PYTHON) scripts/profile_ops.py $(ARGS)

# The reproduction report, with fit on JAX and PyTorch beside TensorFlow's trainers (so it
# installs them); its figures and text are committed under docs/report/.
report: backends
	$(PYTHON) scripts/report.py --docs docs/report $(ARGS)

worked-example: install
	$(PYTHON) scripts/worked_example.py

gradient-check: install
	$(PYTHON) scripts/gradient_check.py

test: install
	$(PYTHON) -m pytest $(ARGS)

test-slow: install
	$(PYTHON) -m pytest -m slow $(ARGS)

# The fast cross-backend tests (JAX and PyTorch); their slow ones run with test-slow.
test-backends: backends
	$(PYTHON) -m pytest -m 'backends and not slow' $(ARGS)

# The lesson notebooks (docs/tutorial/): executed from their jupytext sources, outputs kept.
# KERAS_BP_TUTORIAL_SMALL=1 runs them on a small slice of MNIST.
tutorial: install
	$(PYTHON) docs/tutorial/execute.py

# The documentation site, built into site/ (git-ignored): open site/index.html, no server needed.
DOCS_STAMP := $(VENV)/.docs-installed
$(DOCS_STAMP): $(STAMP)
	$(PYTHON) -m pip install --disable-pip-version-check -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PYTHON) -m mkdocs build --quiet

# Every page of the built site in headless chromium (Debian's: apt-get install chromium).
test-site: docs
	KERAS_BP_TEST_SITE=1 $(PYTHON) -m pytest -n 0 tests/test_site.py $(ARGS)

lint: install
	$(PYTHON) -m ruff check keras_bp scripts tests
	$(PYTHON) -m ruff format --check keras_bp scripts tests

format: install
	$(PYTHON) -m ruff format keras_bp scripts tests
	$(PYTHON) -m ruff check --fix keras_bp scripts tests

clean:
	rm -rf runs site .pytest_cache .ruff_cache

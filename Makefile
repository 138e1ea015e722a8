# weakhand — `make run` runs the whole workbook headless, `make test` runs every test.
# Both bootstrap .venv idempotently from environment.yml: the exact versions of requirements.lock
# (CPU torch on CPU machines). `make lock` re-resolves the lock from pyproject.toml's ranges.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROFILE ?= cpu
NAME   ?= $(PROFILE)
DEVICE ?= auto
ARGS   ?=

.PHONY: env lock run smoke test test-lib test-notebooks bench lab clean-runs

env:
	@$(PYTHON) tools/bootstrap.py --venv $(VENV)

lock:  ## re-resolve requirements.lock from pyproject.toml's ranges (then `make env` installs it)
	$(PYTHON) tools/lock.py --python $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))

run: env  ## the main job: every notebook, headless, on the synthetic default data
	$(BIN)/weakhand run --profile $(PROFILE) --name $(NAME) --device $(DEVICE) $(ARGS)

smoke: env
	$(BIN)/weakhand run --profile smoke --name smoke $(ARGS)

test: env  ## library tests, the ordered smoke pipeline, and nbval on every notebook
	@bash tools/run_tests.sh $(BIN)/python

test-lib: env
	$(BIN)/python -m pytest tests -m "not slow" -q

bench: env  ## where the time goes (renderer, loader, training, inference, evaluation) -> benchmarks/results/
	$(BIN)/weakhand bench --device $(DEVICE) $(ARGS)

lab: env  ## JupyterLab on git-ignored copies of the notebooks (runs/interactive/notebooks/)
	$(BIN)/python tools/lab.py --jupyter $(BIN)/jupyter

clean-runs:
	rm -rf runs/

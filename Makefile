# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DATA := data/synthetic

.PHONY: install data demo test test-fast clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

$(DATA)/info.json: | $(STAMP)
	$(PY) -m mmv.data.synthetic --output_dir $(DATA)

data: $(DATA)/info.json

# Trains configs/tiny.py (resuming if runs/demo has a checkpoint), then evaluates the latest
# checkpoint on the synthetic benchmark (retrieval, linear probe, zero-shot classification),
# then says whether the figures are what a working install gets (mmv/tools/demo_check.py),
# then prints the paper's results table with the demo's row beside it (mmv/table.py).
demo: install data
	$(PY) launch.py --config configs/tiny.py --workdir runs/demo
	$(PY) -m mmv.evaluate --benchmark synthetic --data_dir $(DATA) --workdir runs/demo \
	    --output runs/demo/eval.json
	$(PY) -m mmv.tools.demo_check runs/demo/eval.json
	$(PY) -m mmv.table --records runs/demo/eval.json

test: install
	$(PY) -m pytest -n 2 --dist loadfile --durations=10 tests

# The unit tier, to run while working: no process launches, no media conversion, no training
# runs (tests marked `slow` in tests/, see pytest.ini). CI runs the whole suite (`make test`).
test-fast: install
	$(PY) -m pytest -n 2 --dist loadfile -m 'not slow' --durations=10 tests

clean:
	rm -rf runs $(DATA)

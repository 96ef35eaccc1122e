# Two commands: `make serve` (set up and start the server) and `make test` (set up and run the tests).
# The vLLM tier (tests/e2e/test_vllm.py) needs the `vllm` extra (~2 GB, a vLLM start of minutes and
# ~7 GB of memory): it is installed, and the tier runs, where CI is set (.ci/run) or VLLM=1 is given.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
comma := ,
EXTRAS := test$(if $(or $(CI),$(VLLM)),$(comma)vllm)
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: serve test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed*
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/inferd serve

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench.py

clean:
	rm -rf $(VENV)

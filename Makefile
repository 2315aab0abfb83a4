# Set-up and the two everyday commands. `make demo` and `make test` install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the image (infra/Dockerfile) sets these: torch from PyTorch's CPU or CUDA index
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: install demo lint test test-main test-postgres test-fast bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@# torch first, pinned: the CPU wheel here; otherwise the newest CUDA build (GBs) comes in
	$(BIN)/pip install "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(BIN)/pip install -e ".[dev]"
	@# mediapipe needs opencv-contrib-python and PySceneDetect opencv-python; both write the same
	@# `cv2` package and uninstalling either breaks it. Keep one copy: contrib, a superset.
	$(BIN)/pip uninstall -y opencv-python opencv-python-headless
	$(BIN)/pip install --force-reinstall --no-deps "opencv-contrib-python==4.11.0.86"
	$(BIN)/python -c "import av, cv2, diffusers, duckdb, mediapipe, prefect, pyarrow, scenedetect, torch, transformers, yt_dlp"
	touch $@

demo: install
	$(BIN)/animate-anyone run demo

# three workers (pytest-xdist) on CI's 2 cores: much of the suite waits on subprocesses, servers
# and workers, and with two the cores sat idle 11 % of the time (21 min 58 s; three: 18 min 41 s,
# 192 % CPU). Each worker starts its own temporary Prefect server and gets its share of the cores
# as its thread budget (tests/conftest.py). The PostgreSQL rehearsal (127.0.0.1:5432, or
# POSTGRES_URL) runs beside the rest, first on one worker
XDIST := -n 3 --dist loadfile --no-loadscope-reorder

test: install lint
	$(BIN)/python -m pytest -q $(XDIST) --durations=15 -m "not gpu"

lint: install
	$(BIN)/ruff check animate_anyone flows tests benchmarks

test-main: install lint
	$(BIN)/python -m pytest -q $(XDIST) --durations=15 -m "not gpu and not postgres"

test-postgres: install
	$(BIN)/python -m pytest -q --durations=15 -m "postgres and not gpu"

# the inner loop: no subprocess CLI runs, no Prefect flows, nothing slow (under 2 minutes)
test-fast: install lint
	$(BIN)/python -m pytest -q -m "not gpu and not e2e and not flow and not slow and not deploy and not postgres"

bench: install
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/pose.py mediapipe
	$(BIN)/python benchmarks/pose_tables.py --rows 1000000
	@# after `make demo` (it trains in ./data): stage speeds and the model's pose-following
	$(BIN)/python benchmarks/train.py cpu --data-root data
	$(BIN)/python benchmarks/evaluate.py --data-root data
	$(BIN)/python benchmarks/ceiling.py --data-root data

clean:
	rm -rf $(VENV) data benchmarks/work

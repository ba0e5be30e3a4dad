# Two commands on a fresh machine: `make demo` and `make test`.
# torch is pinned to the CPU wheel first: a bare `torch` requirement would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_CPU ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test test-peers bench-peers benchmark clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_CPU)
	$(PY) -m pip install -q -e ".[dwave,zoo,lightning,dataset,quantus,dev]"
	touch $(STAMP)

demo: install
	$(VENV)/bin/captum-qubo demo --out out/demo

test: install
	$(PY) -m pytest -n 2 -q

# All benchmarks (~75 min on 2 cores); each prints its table and writes benchmarks/results/.
benchmark: install
	$(PY) -m benchmarks.compare_methods
	$(PY) -m benchmarks.latency
	$(PY) benchmarks/annealing_study.py --full --skip-speed
	$(PY) benchmarks/annealing_study.py --speed-only --speed-dims 4 6 8 10 12 14 --ours-only-dims 16 18 20
	$(PY) benchmarks/callback_overhead.py
	$(PY) benchmarks/quantus_comparison.py
	$(PY) benchmarks/train_digits_with_explanations.py
	$(PY) benchmarks/dataset_scale.py

# Parity with pytorch-grad-cam in its own venv (torch 2.14.1 + torchvision 0.29.1 + grad-cam); CI runs it too.
test-peers:
	bash .ci/peers.sh

# Our baselines next to pytorch-grad-cam (maps and latency), in the peers venv.
bench-peers: test-peers
	.venv-peers/bin/python benchmarks/peer_comparison.py

clean:
	rm -rf $(VENV) .venv-peers out build *.egg-info

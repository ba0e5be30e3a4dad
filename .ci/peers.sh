#!/usr/bin/env bash
# Parity against the peer library pytorch-grad-cam (PyPI name `grad-cam`).
#
# pytorch-grad-cam needs torchvision, and torchvision only imports beside torch 2.14.1 on this kind of machine,
# while the main venv pins torch 2.13.0 (CPU). So the peers live in their own venv, `.venv-peers`, built here
# from scratch when missing, and tests/test_peer_parity.py runs there with CAPTUM_QUBO_REQUIRE_PEERS=1 so that a
# missing peer fails the run instead of skipping it.
#
# Usage: bash .ci/peers.sh [extra pytest args]
#   PYTHON=python3.11 PEERS_VENV=.venv-peers bash .ci/peers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${PEERS_VENV:-.venv-peers}"
PY="$VENV/bin/python"
STAMP="$VENV/.installed"
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
PEER_PIN="grad-cam==1.5.7"

# The stamp records the pins, so changing them rebuilds the venv.
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$TORCH_PINS $PEER_PIN" ]; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip
    # torch and torchvision first and together: torchvision's wheel must match torch exactly.
    "$PY" -m pip install -q $TORCH_PINS
    "$PY" -m pip install -q "$PEER_PIN" -e ".[zoo]" pytest
    echo "$TORCH_PINS $PEER_PIN" > "$STAMP"
fi

CAPTUM_QUBO_REQUIRE_PEERS=1 "$PY" -m pytest -q -p no:cacheprovider tests/test_peer_parity.py "$@"

#!/usr/bin/env bash
# One-time set-up on a fresh machine: offline corpora from Debian, the CPU torch wheel, hfssl with dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && ! { command -v bible >/dev/null && [ -d /usr/share/games/fortunes ]; }; then
  apt-get update -qq && apt-get install -y -qq bible-kjv fortunes >/dev/null
fi
# Pinning the CPU build keeps set-up to seconds here. A torch already installed (a GPU user's CUDA build) is kept:
# pip would otherwise replace it with the CPU wheel. pyproject asks torch>=2.4.
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install -q torch==2.13.0 2>/dev/null || python -m pip install -q "torch>=2.4"
fi
python -m pip install -q -e ".[dev]"

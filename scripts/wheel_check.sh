#!/usr/bin/env bash
# CI: the host and every plugin build as plain wheels; installed (not editable) into a
# fresh virtualenv and run from outside the checkout, they evaluate a ranking cell and a
# TALLRec cell on the tiny random Llama.
#
# The virtualenv sees the system's site-packages (torch, transformers and the data
# packages that scripts/setup.sh installed) so nothing is downloaded; recguard and its
# plugins must come from the wheels, which the first check asserts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python || command -v python3)}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
    -w "$WORK/wheels" . plugins/*/
"$PY" -m venv --system-site-packages "$WORK/venv"
VENV_PY="$WORK/venv/bin/python"
"$VENV_PY" -m pip install -q --disable-pip-version-check --no-deps --no-index "$WORK"/wheels/*.whl
cd "$WORK"
export RECGUARD_CACHE="$WORK/cache"

"$VENV_PY" - "$WORK/venv" <<'PY'
import importlib, sys
from importlib import metadata
venv = sys.argv[1]
names = ["recguard"] + sorted(ep.value.split(":")[0] for ep in metadata.entry_points(group="recguard"))
for name in names:
    where = importlib.import_module(name).__file__
    assert where.startswith(venv), f"{name} comes from {where}, not the wheel"
print(f"{len(names)} packages from their wheels")
PY
"$WORK/venv/bin/recguard" eval --attack average --seeds 0 -q --output "$WORK/out"
"$VENV_PY" -c "from recguard.kit.lm.models import save_tiny_causal_lm; save_tiny_causal_lm('$WORK/tiny')" 2>/dev/null
"$WORK/venv/bin/recguard" eval --backbone tallrec --backbone-opt model="$WORK/tiny" \
    --backbone-opt epochs=1 --backbone-opt max_length=4096 --attack badrec --defense rd \
    --protocol tallrec --protocol-opt n_train_samples=8 --protocol-opt n_test_samples=16 \
    --protocol-opt history_len=3 --seeds 0 -q --output "$WORK/out"
echo "wheels: ranking and LLM cells ran from an installed recguard"

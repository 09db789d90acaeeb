#!/usr/bin/env bash
# hfssl's GPU measurements in one pass, for a short lease on one card (about 7 minutes on an H200):
#   1. the card's measured bf16 matrix-product peak (the MFU denominator beside the datasheet's);
#   2. recipes/mlm.py, BERT-base, seq 128, bf16: tokens/s and MFU, eager and torch.compile (issue 3);
#   3. recipes/contrastive.py, ResNet-18 at 32 px, SimCLR and BYOL: images/s (issue 6);
#   4. recipes/word2vec.py on the GPU (batched steps): words/s with quality (issue 5);
#   5. benchmarks/mlm_throughput.py, one pair: the recipe vs the canonical transformers loop on the GPU.
# Each part runs under its own time limit, so one failure does not cost the others.
#
#   OUT=benchmarks/out/gpu BUDGET=540 bash benchmarks/gpu_suite.sh DATA_DIR
#
# DATA_DIR (made by benchmarks/gpu_data.py) holds kjv_docs.txt (the KJV Bible + Python docs text that the CPU benchmarks use; the GPU machine has
# no `bible` program) and gensim's questions-words.txt, wordsim353.tsv and simlex999.txt. SMALL=1 shrinks every
# part to seconds, to try the script on a CPU before spending GPU time. PARTS="peak mlm_b512 mlm_b512_fixed" runs only the parts
# named (the summary always runs).
set -u
DATA=${1:?usage: bash benchmarks/gpu_suite.sh DATA_DIR}
OUT=${OUT:-benchmarks/out/gpu}
SMALL=${SMALL:-0}
WORK=${WORK:-/tmp/hfssl-gpu-suite}
mkdir -p "$OUT" "$WORK"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export HFSSL_CACHE=$WORK/cache PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PYTHON:-python3}

BUDGET=${BUDGET:-0}  # seconds for the whole suite (0: no limit): parts are cut short to leave the summary its time
part() {  # part NAME SECONDS COMMAND...: run with a time limit, log its output, note its exit status
  local name=$1 limit=$2; shift 2
  if [ -n "${PARTS:-}" ] && [[ " $PARTS " != *" $name "* ]]; then echo "=== $name: not in PARTS"; return; fi
  if [ "$BUDGET" -gt 0 ]; then
    local left=$((BUDGET - SECONDS - 20))
    if [ "$left" -lt 15 ]; then echo "=== $name: skipped, the budget is spent"; return; fi
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --signal=TERM --kill-after=5 "$limit" "$@" > "$WORK/$name.log" 2>&1
  local rc=$?
  tail -n 3 "$WORK/$name.log" | cut -c1-300
  echo "=== $name: rc $rc, $((SECONDS - t0)) s"
}

if [ "$SMALL" = 1 ]; then
  MLM_MODEL=(--hidden_size 64 --num_hidden_layers 2 --num_attention_heads 2 --intermediate_size 128 --vocab_size 2000
             --per_device_train_batch_size 8 --max_steps 12 --logging_steps 4 --max_train_samples 3000)
  W2V=(--epochs 1 --max_train_samples 5000 --fused_kernel false)
  IMG=(--max_steps 6 --per_device_train_batch_size 32 --logging_steps 2 --mixed_precision no)  # bf16 convs crawl on CPU
  PAIR=(--pairs 1 --max_steps 10 --hidden_size 64 --num_hidden_layers 2 --num_attention_heads 2 --intermediate_size 128
        --vocab_size 2000 --per_device_train_batch_size 8)
  MM=1024
  B512=(--max_steps 12 --profile_skip_steps 6 --profile_steps 2)
else
  MLM_MODEL=(--hidden_size 768 --num_hidden_layers 12 --num_attention_heads 12 --intermediate_size 3072 --vocab_size 30522
             --per_device_train_batch_size 256 --max_steps 200 --logging_steps 25)
  W2V=(--epochs 3); IMG=(--max_steps 120 --per_device_train_batch_size 512 --logging_steps 20 --mixed_precision bf16)
  PAIR=(--pairs 1 --max_steps 150 --hidden_size 768 --num_hidden_layers 12 --num_attention_heads 12
        --intermediate_size 3072 --vocab_size 30522 --per_device_train_batch_size 256)
  MM=8192
  # recipes/configs/mlm/bert-base.yaml's speed settings; the profile covers 3 steps near the end (hfssl/profiling.py)
  B512=(--per_device_train_batch_size 512 --dropout 0 --torch_compile true --max_steps 120 --logging_steps 20
        --profile_skip_steps 100 --profile_steps 3)
fi

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit --format=csv 2>/dev/null || true
  $PY -c "import torch, transformers, accelerate, datasets, tokenizers; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'accelerate', accelerate.__version__, 'datasets', datasets.__version__, 'tokenizers', tokenizers.__version__)"
} 2>&1 | tee "$OUT/versions.txt"

# 1. Matrix-product peak: mean of 20 products after 3 warm-ups, random bf16 data.
part peak 60 $PY - "$MM" "$OUT/peak.json" <<'EOF'
import json, sys, time, torch
n, out = int(sys.argv[1]), sys.argv[2]
dev = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.bfloat16 if dev == "cuda" else torch.float32  # plain bf16 products are very slow on many CPUs
a, b = (torch.randn(n, n, device=dev, dtype=dtype) for _ in range(2))
for _ in range(3):
    a @ b
sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
sync(); t = time.perf_counter()
for _ in range(20):
    a @ b
sync(); s = (time.perf_counter() - t) / 20
res = {"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "n": n, "tflops": 2 * n**3 / s / 1e12}
print(res); json.dump(res, open(out, "w"))
EOF

# 2. MLM: BERT-base from scratch, the tokenizer trained once (run A) and reused.
MLM=($PY recipes/mlm.py --train_file "$DATA/kjv_docs.txt" --validation_split_percentage 1 --eval_steps 0
     --report_to none --mixed_precision bf16 --preprocessing_num_workers 8 --overwrite_output_dir "${MLM_MODEL[@]}")
part mlm_eager 150 "${MLM[@]}" --output_dir "$WORK/mlm_eager"
part mlm_compile 200 "${MLM[@]}" --tokenizer_name "$WORK/mlm_eager" --torch_compile true --output_dir "$WORK/mlm_compile"
# The issue-3 configuration, profiled: the GPU busy fraction says how much of the gap to the bare step is the loop's.
part mlm_b512 240 "${MLM[@]}" "${B512[@]}" --output_dir "$WORK/mlm_b512"
# The same with the head on a fixed number of positions: no mid-step sync, one shape to compile. Keep it if it pays.
part mlm_b512_fixed 240 "${MLM[@]}" "${B512[@]}" --fixed_sparse_capacity true --output_dir "$WORK/mlm_b512_fixed"

# 3. Image SSL, ResNet-18, 32 px views of the offline digits; no evaluation inside the timed loop.
IMG_ARGS=($PY recipes/contrastive.py --image_size 32 --eval_steps 1000000 --report_to none
          --dataloader_num_workers 8 --overwrite_output_dir "${IMG[@]}")
part img_simclr 120 "${IMG_ARGS[@]}" --method simclr --output_dir "$WORK/img_simclr"
part img_byol 120 "${IMG_ARGS[@]}" --method byol --output_dir "$WORK/img_byol"

# 4. word2vec on the GPU (batched steps): defaults, two threads, CBOW, a larger batch (4096 windows diverge on CPU).
W2V_ARGS=($PY recipes/word2vec.py --train_file "$DATA/kjv_docs.txt" --report_to none --overwrite_output_dir
          --analogy_file "$DATA/questions-words.txt" --similarity_files "$DATA/wordsim353.tsv" "$DATA/simlex999.txt"
          --eval_every_epochs 100 --save_word2vec_format none --save_sentence_transformers false "${W2V[@]}")
part w2v_sg 90 "${W2V_ARGS[@]}" --output_dir "$WORK/w2v_sg"
part w2v_sg_workers2 90 "${W2V_ARGS[@]}" --workers 2 --output_dir "$WORK/w2v_sg_workers2"
part w2v_cbow 90 "${W2V_ARGS[@]}" --model cbow --output_dir "$WORK/w2v_cbow"
part w2v_sg_b2048 90 "${W2V_ARGS[@]}" --batch_windows 2048 --chunk_words 50000 --output_dir "$WORK/w2v_sg_b2048"

# 5. One pair against the canonical loop, both in bf16.
part mlm_pair 200 $PY benchmarks/mlm_throughput.py --corpus_file "$DATA/kjv_docs.txt" "${PAIR[@]}" \
  --ours_flags "--mixed_precision bf16" --peer_flags "--mixed_precision bf16" --out "$WORK/mlm_pair"

# Summary: every all_results.json, and MFU against the measured peak as well as the datasheet's.
$PY - "$WORK" "$OUT" <<'EOF' 2>&1 | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
peak = json.loads((out / "peak.json").read_text())["tflops"] if (out / "peak.json").exists() else None
print(f"measured bf16 matmul peak: {peak} TFLOP/s")
keep = ("train_tokens_per_second", "train_tokens_per_second_steady", "mfu", "mfu_steady", "peak_memory_mb", "eval_loss",
        "train_words_per_second", "analogy_accuracy", "train_images_per_second", "knn_accuracy", "linear_probe_accuracy",
        "random_init_knn_accuracy", "train_loss")
for f in sorted(work.glob("*/all_results.json")):
    r = json.loads(f.read_text())
    row = {k: r[k] for k in keep if k in r}
    if peak and "mfu_steady" in r:
        row["mfu_steady_vs_measured_peak"] = r["mfu_steady"] * 989 / peak  # the recipe divides by the 989 TFLOP/s datasheet
    print(f.parent.name, json.dumps(row))
for f in sorted(work.glob("*/profile/summary_rank0.json")):
    s = json.loads(f.read_text())
    print(f.parent.parent.name, "profile", json.dumps({k: s[k] for k in ("steps", "wall_ms_per_step", "device_busy_fraction")}),
          "top ops:", "; ".join(f"{op['name'][:50]} {op['self_ms_per_step']:.2f} ms" for op in s["top_ops"][:8]))
pair = work / "mlm_throughput.json"  # written beside its --out folder
if pair.exists():
    s = json.loads(pair.read_text())
    print("mlm_pair", json.dumps({k: s[k] for k in ("tokens_per_second", "ratio_median", "heldout_loss", "peak_memory_mb")}))
EOF
tar czf "$OUT/runs.tgz" -C "$WORK" --exclude='*.safetensors' --exclude='trace_rank*.json' --exclude='*.bin' --exclude='checkpoints' --exclude='*.npy' \
  --exclude='cache' . 2>/dev/null
for t in "$WORK"/*/profile/trace_rank0.json; do  # the Chrome traces, for https://ui.perfetto.dev
  [ -f "$t" ] && gzip -c "$t" > "$OUT/$(basename "$(dirname "$(dirname "$t")")")_trace.json.gz"
done
echo "suite done at $(date -u +%H:%M:%S)"

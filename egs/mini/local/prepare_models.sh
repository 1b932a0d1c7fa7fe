#!/usr/bin/env bash
# egs/mini's "pretrained" models, made before stage 3 (the stage engine calls this hook): no
# pretrained Whisper or LLaDA exists at this size, so the recipe makes its own from the corpus:
#   tokenizer/   SentencePiece on the training answers and prompts (local/train_tokenizer.py)
#   whisper/     a tiny Whisper encoder pre-trained on the training audio (local/pretrain_whisper.py)
#   llada/       a tiny LLaDA pre-trained as a masked-diffusion LM on the text (local/pretrain_llada.py)
# each in the official on-disk layout, so stage 3 loads them exactly as it loads the real ones.
# Idempotent: a part whose directory exists is kept (delete it to redo).
# Usage: local/prepare_models.sh [--datadir data] [--dumpdir dump] [--outdir exp/pretrained] [--seed 0]
set -euo pipefail
datadir=data
dumpdir=dump
outdir=exp/pretrained
nj=2          # accepted for the engine's interface; the pre-training runs in one process
seed=0
python=python3
help_message=$(sed -n '2,10{s/^# \{0,1\}//;p}' "$0")
. utils/parse_options.sh

for f in "$datadir/train/tasks.jsonl" "$datadir/dev/tasks.jsonl" "$dumpdir/train/feats.scp" "$dumpdir/dev/feats.scp"; do
  [ -e "$f" ] || { echo "local/prepare_models.sh: missing $f: run stages 1-2 first" >&2; exit 1; }
done
mkdir -p "$outdir"
if [ ! -f "$outdir/tokenizer/spm.model" ]; then
  $python local/train_tokenizer.py --tasks "$datadir/train/tasks.jsonl" --out "$outdir/tokenizer/spm.model"
fi
if [ ! -f "$outdir/whisper/config.json" ]; then
  $python local/pretrain_whisper.py --train_data "$datadir/train" --train_dump "$dumpdir/train" \
    --dev_data "$datadir/dev" --dev_dump "$dumpdir/dev" --tokenizer "$outdir/tokenizer" \
    --out_dir "$outdir/whisper" --seed "$seed"
fi
if [ ! -f "$outdir/llada/config.json" ]; then
  $python local/pretrain_llada.py --train_data "$datadir/train" --dev_data "$datadir/dev" \
    --tokenizer "$outdir/tokenizer" --out_dir "$outdir/llada" --seed "$seed"
fi
echo "pretrained models in $outdir: tokenizer, whisper, llada"

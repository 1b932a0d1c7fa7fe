#!/usr/bin/env bash
# Make the "pretrained" models egs/mini starts from, since none exists at its size:
#   <outdir>/tokenizer/spm.model  SentencePiece (BPE) on the training answers and chat prompts
#   <outdir>/whisper/             a tiny Whisper encoder (official layout: config.json +
#                                 model.safetensors), pre-trained on the training audio
#   <outdir>/llada/               a tiny LLaDA (official layout), pre-trained on the training text
#   <outdir>/.done                written last; holds the options it was made with and checksums
#                                 of its inputs (dump/<set>/.done, data/<set>/{tasks.jsonl,text})
# Each model directory also holds pretrain_log.txt (dev metrics, timing); logs go to <outdir>/log/.
#
# Usage: local/prepare_models.sh [--datadir data] [--dumpdir dump] [--outdir exp/pretrained]
#                                [--nj 2] [--seed 0] [...]   (--help lists every option)
#   Run from egs/mini after stages 1-2 (data/<train_set>, data/<dev_set> and their dump/ features).
#   With the same options and a finished <outdir>, it returns at once; otherwise it redoes all
#   three steps. With --nj 2 the encoder and the LLM are pre-trained at the same time.
set -euo pipefail

datadir=data           # Kaldi data dirs with tasks.jsonl (stage 1)
dumpdir=dump           # their features (stage 2)
outdir=exp/pretrained  # where the models go
train_set=train        # set the models learn from
dev_set=dev            # set the logs report on
nj=2                   # 2: pre-train the encoder and the LLM in parallel; 1: one after the other
threads=1              # torch threads of each pre-training job
seed=0                 # seed of both pre-trainings
vocab_size=768         # SentencePiece pieces
tokenizer_opts=""      # extra options for local/train_tokenizer.py
whisper_opts=""        # extra options for local/pretrain_whisper.py (e.g. "--epochs 4")
llada_opts=""          # extra options for local/pretrain_llada.py
help_message=$(sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p}}' "$0")  # the comment at the top

. utils/parse_options.sh
[ $# -eq 0 ] || { echo "$0: unexpected arguments: $*; see $0 --help" >&2; exit 1; }

python=${PYTHON:-python3}
local=$(dirname "$0")
log() { echo "$(date '+%Y-%m-%d %H:%M:%S') (prepare_models.sh) $*"; }
die() { echo "$0: error: $*" >&2; exit 1; }

[[ $nj =~ ^[1-9][0-9]*$ ]] || die "--nj must be a positive integer, got '$nj'"
"$python" -c "import diffa" 2>/dev/null || die "'$python' cannot import diffa; source path.sh first"
for set in "$train_set" "$dev_set"; do
  for f in "$datadir/$set/tasks.jsonl" "$datadir/$set/text"; do
    [ -f "$f" ] || die "missing $f: run stage 1 (data preparation) first"
  done
  [ -f "$dumpdir/$set/.done" ] || die "missing $dumpdir/$set/.done: run stage 2 (feature extraction) first"
done

stamp="datadir=$datadir dumpdir=$dumpdir train_set=$train_set dev_set=$dev_set threads=$threads seed=$seed"
stamp+=" vocab_size=$vocab_size tokenizer_opts=$tokenizer_opts whisper_opts=$whisper_opts llada_opts=$llada_opts"
# and what it reads: the sets' features (their markers name the audio by checksum, diffa.sh) and texts
stamp+=" inputs: $(cksum "$dumpdir/$train_set/.done" "$dumpdir/$dev_set/.done" "$datadir/$train_set/tasks.jsonl" \
  "$datadir/$train_set/text" "$datadir/$dev_set/tasks.jsonl" "$datadir/$dev_set/text" | cut -d' ' -f1 | xargs)"
if [ -f "$outdir/.done" ] && [ "$(cat "$outdir/.done")" = "$stamp" ]; then
  log "$outdir is already prepared with these options"
  exit 0
fi
rm -f "$outdir/.done"
mkdir -p "$outdir/log"
SECONDS=0

log "tokenizer: $datadir/$train_set/tasks.jsonl -> $outdir/tokenizer/spm.model"
# shellcheck disable=SC2086
"$python" "$local/train_tokenizer.py" --tasks "$datadir/$train_set/tasks.jsonl" \
  --out "$outdir/tokenizer/spm.model" --vocab_size "$vocab_size" $tokenizer_opts \
  >"$outdir/log/tokenizer.log" 2>&1 || die "tokenizer training failed: see $outdir/log/tokenizer.log"

whisper() {
  # shellcheck disable=SC2086
  "$python" "$local/pretrain_whisper.py" --train_data "$datadir/$train_set" \
    --train_dump "$dumpdir/$train_set" --dev_data "$datadir/$dev_set" --dev_dump "$dumpdir/$dev_set" \
    --tokenizer_dir "$outdir/tokenizer" --out_dir "$outdir/whisper" --seed "$seed" --threads "$threads" \
    $whisper_opts >"$outdir/log/whisper.log" 2>&1
}
llada() {
  # shellcheck disable=SC2086
  "$python" "$local/pretrain_llada.py" --train_data "$datadir/$train_set" --dev_data "$datadir/$dev_set" \
    --tokenizer_dir "$outdir/tokenizer" --out_dir "$outdir/llada" --seed "$seed" --threads "$threads" \
    $llada_opts >"$outdir/log/llada.log" 2>&1
}

log "whisper: $dumpdir/$train_set -> $outdir/whisper (log: $outdir/log/whisper.log)"
log "llada: $datadir/$train_set/tasks.jsonl -> $outdir/llada (log: $outdir/log/llada.log)"
if [ "$nj" -ge 2 ]; then
  whisper & whisper_pid=$!
  llada & llada_pid=$!
  wait "$whisper_pid" || die "Whisper pre-training failed: see $outdir/log/whisper.log"
  wait "$llada_pid" || die "LLaDA pre-training failed: see $outdir/log/llada.log"
else
  whisper || die "Whisper pre-training failed: see $outdir/log/whisper.log"
  llada || die "LLaDA pre-training failed: see $outdir/log/llada.log"
fi
for part in whisper llada; do
  sed "s/^/  $part /" "$outdir/$part/pretrain_log.txt" | grep -v "^  $part .*\.py "
done

echo "$stamp" >"$outdir/.done.tmp"
mv "$outdir/.done.tmp" "$outdir/.done"
log "done in ${SECONDS}s"

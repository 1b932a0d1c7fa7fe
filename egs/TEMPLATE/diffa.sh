#!/usr/bin/env bash
# The DIFFA recipe stage engine. A recipe (egs/<recipe>) links diffa.sh -> ../TEMPLATE/diffa.sh and
# utils -> ../../utils, and its run.sh is a few options then `./diffa.sh ... "$@"`; it runs in the
# recipe directory, sourcing its path.sh and cmd.sh (train_cmd, decode_cmd, feats_cmd).
#
# Stages talk only through files in data/, dump/ and exp/:
#   1 data preparation        local/data.sh --datadir data [--local_data_opts] -> data/<set>, validated
#   2 feature extraction      data/<set> -> dump/<set>/{feats.scp,utt2num_frames,bad_utts,...}
#   3 semantic alignment      curriculum stage 1: dump/<train> -> exp/stage1_semantic
#   4 acoustic alignment      curriculum stage 2: + the previous model -> exp/stage2_acoustic
#   5 SFT                     curriculum stage 3: + the previous model -> exp/stage3_sft
#   6 preference pairs        dump/<train> (+ the previous model, --pairs_modes sampled) -> exp/pairs
#   7 preference optimisation curriculum stage 4 (VRPO): the previous model + exp/pairs
#                             -> exp/stage4_vrpo (the previous model is also the reference)
#   8 decoding                model + dump/<test> -> exp/<model>/decode_<tag>/<test>/results.jsonl
#   9 scoring                 decoding results -> exp/<model>/decode_<tag>/<test>/score/
#  10 export                  model -> exp/export/<model>
# Recipe hooks, run when the recipe has them: local/prepare_models.sh before stage 3 (makes the
# pretrained models when there is nothing to download, as in egs/mini) and local/score.sh after
# the last stage when stage 9 ran (--decode_dir, --model_dir, --stage: the first stage of this run,
# --elapsed; summarises the scores, e.g. into RESULTS.md).
# A training stage whose config option is empty is skipped, and the next one starts from the last
# model trained (DIFFA v1 trains stages 3 and 4 only); stages 6 and 7 need --vrpo_config.
# Each stage logs "Stage N: what: inputs -> outputs", names the stage to run first when an input
# is missing, and writes a .done marker when it ends, holding the settings its outputs depend on
# (options, a checksum of its config, checksums of what it read: data files, the markers of the
# stages that made its other inputs) and when it finished. A stage whose marker exists is skipped
# unless --force true; one done with other settings, or from inputs made again since (data
# prepared anew, a model retrained), stops the run (decoding: --tag keeps both). Stages that read
# features first check that they are those of the data directory as it is now. A forced training
# stage starts from scratch, not from its checkpoints; the model it replaces waits in
# <dir>.replaced until the new one is trained. Feature extraction and decoding resume job by job;
# a stage locks the directory it writes while it runs.
# Training runs python -m diffa.bin.train as one process, under torchrun --standalone for several
# processes on one node, or, with --num_nodes N > 1, as one Slurm job of N nodes that runs one
# torchrun per node (cmd.sh's train_cmd must be utils/run_jobs.sh --backend slurm); the nodes meet
# at --master_port on the job's first node.
#
# Usage: ./run.sh [options]   (a recipe's run.sh: its options, then yours, to ./diffa.sh)
#   e.g. ./run.sh --stage 2 --stop_stage 2 --nj 8

# The braces make bash read the whole engine before running it: a recipe that runs for days keeps
# the engine it started with when this file changes under it (a git pull, an edit).
{
stage=1                  # first stage to run (1-10)
stop_stage=10            # last stage to run (1-10)
nj=4                     # parallel jobs for feature extraction, decoding and local/prepare_models.sh
ngpu=0                   # GPUs per node for training (0: CPU); decoding jobs get one GPU if > 0
num_nodes=1              # nodes for training; > 1: one Slurm job, one torchrun per node (train_cmd: slurm)
nproc_per_node=0         # training processes per node (0: ngpu, at least 1); > 1: torchrun
master_port=29500        # --num_nodes > 1: torchrun's rendezvous port on the job's first node
torchrun_opts=""         # extra torchrun options (training runs torchrun when it has > 1 process or node)
force=false              # true: redo the stages in range even when their .done marker exists
python=python3           # Python interpreter
datadir=data             # data directories: <datadir>/<set>
dumpdir=dump             # features: <dumpdir>/<set>
expdir=exp               # models, preference pairs, decoding results
train_sets=""            # training sets of every training stage, space-separated
semantic_train_sets=""   # stage 3 training sets (default: --train_sets)
acoustic_train_sets=""   # stage 4 training sets (default: --train_sets)
sft_train_sets=""        # stage 5 training sets (default: --train_sets)
vrpo_train_sets=""       # stages 6-7 training sets (default: --train_sets)
dev_set=""               # validation set (optional)
test_sets=""             # sets to decode and score, space-separated
local_data_opts=""       # options for local/data.sh besides --datadir (e.g. "--corpora_root /data")
n_mels=80                # log-mel bins: 80 (Whisper-small, DIFFA) or 128 (Whisper-large-v3, DIFFA-2)
feats_dtype=float32      # stored feature dtype: float32 or float16
skip_bad=false           # true: leave out unreadable audio (dump/<set>/bad_utts); false: fail on it
feats_opts=""            # extra options for diffa.bin.extract_feats (e.g. "--long_audio reject")
semantic_config=""       # stage 3 training config (empty: skip the stage)
acoustic_config=""       # stage 4 training config (empty: skip the stage)
sft_config=""            # stage 5 training config (empty: skip the stage)
vrpo_config=""           # stage 7 training config (empty: skip stages 6 and 7)
train_opts=""            # extra options for every training stage (e.g. config overrides)
pairs_modes=swap,external # stage 6 (make_pairs --modes); 'sampled': from the model VRPO starts from, a GPU job
pairs_opts=""            # extra options for diffa.bin.make_pairs (stage 6)
decode_config=""         # stage 8 decoding config (needed by stages 8 and 9)
decode_opts=""           # extra options for diffa.bin.decode
model_dir=""             # model directory for stages 8-10 (default: the last training stage's)
tag=""                   # decoding directory name: decode_<tag> (default: the decode config's name)
score_opts=""            # extra options for diffa.bin.score
export_opts=""           # extra options for diffa.bin.export
help_message=$(sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0")
_command_line="$0$(printf ' %q' "$@")"  # quoted: the log's copy can be pasted back

log() {
  echo "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"
}

die() {
  echo "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) ERROR: $*" >&2
  # A stage that stops before it wrote anything leaves no lock file and folders made for it alone.
  if [ -n "${held_target:-}" ] && [ ! -e "$held_target" ]; then
    rm -f "$held_lock"
    local folder=$held_made
    while [ -n "$folder" ] && rmdir "$folder" 2>/dev/null && [ "$folder" != "$held_top" ]; do
      folder=$(dirname "$folder")
    done
  fi
  exit 1
}

# A path as names and stamps compare it: without ./ in front, / at the end or this directory's
# own absolute prefix.
normal_path() {
  local path=${1#"$PWD"/}
  while [[ $path == ./* ]]; do path=${path#./}; done
  while [[ $path == */ && $path != / ]]; do path=${path%/}; done
  echo "$path"
}

# The repository's utils/ (through the recipe's symlink to this file), so --help works anywhere.
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../utils/parse_options.sh"
[ $# -eq 0 ] || die "unexpected argument(s) '$*': diffa.sh takes only options (see --help)"
expdir=$(normal_path "$expdir") datadir=$(normal_path "$datadir") dumpdir=$(normal_path "$dumpdir")
export PYTHON=$python  # the recipe's hooks (local/*.sh) run the same interpreter
for file in path.sh cmd.sh local; do
  [ -e "$file" ] || die "no $file here: run diffa.sh from a recipe directory (egs/<recipe>)"
done
. ./path.sh
. ./cmd.sh
set -euo pipefail
for var in train_cmd decode_cmd feats_cmd; do
  [ -n "${!var:-}" ] || die "cmd.sh must set $var (e.g. $var=\"utils/run_jobs.sh --backend local\")"
done

stage_names=([1]="data preparation" [2]="feature extraction" [3]="semantic alignment"
  [4]="acoustic alignment" [5]="SFT" [6]="preference pairs" [7]="preference optimisation (VRPO)"
  [8]="decoding" [9]="scoring" [10]="export")
semantic_exp=$expdir/stage1_semantic
acoustic_exp=$expdir/stage2_acoustic
sft_exp=$expdir/stage3_sft
pairs_dir=$expdir/pairs
vrpo_exp=$expdir/stage4_vrpo
# Training stages: their config and output directory.
train_config=([3]="$semantic_config" [4]="$acoustic_config" [5]="$sft_config" [7]="$vrpo_config")
stage_exp=([3]="$semantic_exp" [4]="$acoustic_exp" [5]="$sft_exp" [7]="$vrpo_exp")
# Training sets of stages 3-7 (6: the sets preference pairs are made from).
stage_sets=([3]="${semantic_train_sets:-$train_sets}" [4]="${acoustic_train_sets:-$train_sets}"
  [5]="${sft_train_sets:-$train_sets}" [6]="${vrpo_train_sets:-$train_sets}"
  [7]="${vrpo_train_sets:-$train_sets}")
# The diffa.bin entry point each stage runs.
entry_point=([2]=extract_feats [3]=train [4]=train [5]=train [6]=make_pairs [7]=train [8]=decode
  [9]=score [10]=export)

for opt in stage stop_stage; do
  [[ ${!opt} =~ ^[0-9]+$ ]] && [ "${!opt}" -ge 1 ] && [ "${!opt}" -le 10 ] ||
    die "--$opt must be a stage number 1-10, got '${!opt}'"
done
for opt in nj num_nodes master_port; do
  [[ ${!opt} =~ ^[1-9][0-9]*$ ]] || die "--$opt must be a positive integer, got '${!opt}'"
done
for opt in ngpu nproc_per_node; do
  [[ ${!opt} =~ ^[0-9]+$ ]] || die "--$opt must be a non-negative integer, got '${!opt}'"
done
[ "$stage" -le "$stop_stage" ] || die "--stage $stage is after --stop_stage $stop_stage"
# shellcheck disable=SC2086  # word lists
all_sets=$(printf '%s\n' $train_sets ${stage_sets[*]} $dev_set $test_sets | awk '!seen[$0]++' | xargs)
for set in $all_sets; do
  [[ $set != */* ]] || die "'$set': a set is named by its folder in --datadir ($datadir/<set>), not by a path"
done
# --ngpu 0 means CPU even on a machine with GPUs (training then uses gloo, decoding the CPU)
[ "$ngpu" -gt 0 ] || export CUDA_VISIBLE_DEVICES=""
[ "$nproc_per_node" -gt 0 ] || nproc_per_node=$((ngpu > 0 ? ngpu : 1))
# torchrun is run as --python's module (python -m torch.distributed.run), so that every training
# process runs that interpreter.
# shellcheck disable=SC2206,SC2016  # python, torchrun_opts: word lists; per_node: expanded on the node
if [ "$num_nodes" -gt 1 ]; then
  # Only Slurm starts the other nodes: run_jobs.sh --num_nodes runs the launcher on each of them.
  [[ $train_cmd =~ run_jobs\.sh.*--backend[=\ ]slurm ]] ||
    die "--num_nodes $num_nodes needs train_cmd=\"utils/run_jobs.sh --backend slurm ...\" in cmd.sh," \
      "got train_cmd=\"$train_cmd\""
  # Runs on every node, where the rendezvous host (the job's first node) is known. Its arguments:
  # nodes, processes per node, port, then torchrun's extra options and the training command.
  per_node="exec $python -m torch.distributed.run"' --nnodes "$1" --nproc_per_node "$2" --rdzv_backend c10d'
  per_node+=' --rdzv_endpoint "$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):$3"'
  per_node+=' --rdzv_id "$SLURM_JOB_ID" "${@:4}"'
  train_launcher=(bash -c "$per_node" torchrun "$num_nodes" "$nproc_per_node" "$master_port" $torchrun_opts)
elif [ "$nproc_per_node" -gt 1 ]; then
  train_launcher=($python -m torch.distributed.run --standalone --nproc_per_node "$nproc_per_node" $torchrun_opts)
else
  train_launcher=($python)
fi

in_range() {
  [ "$stage" -le "$1" ] && [ "$1" -le "$stop_stage" ]
}

# Whether stage $1 has work to do with these options (a training stage needs its config).
is_active() {
  case "$1" in
    3 | 4 | 5 | 7) [ -n "${train_config[$1]}" ] ;;
    6) [ -n "$vrpo_config" ] ;;
    *) true ;;
  esac
}

# The last training stage before stage $1 that has a config (empty when none).
previous_model_stage() {
  local n
  for n in 7 5 4 3; do
    if [ "$n" -lt "$1" ] && [ -n "${train_config[$n]}" ]; then
      echo "$n"
      return
    fi
  done
}

# The dump directories of stage $1's training sets, comma-separated.
train_dumps() {
  local dumps="" set
  for set in ${stage_sets[$1]}; do dumps+=${dumps:+,}$dumpdir/$set; done
  echo "$dumps"
}

# need <path> <stage>: stop, naming the stage that makes <path>, when it does not exist.
need() {
  [ -e "$1" ] || die "missing $1: run stage $2 (${stage_names[$2]}) first"
}

# without_nj <stamp>: the stamp less its "--nj N" options (e.g. in --local_data_opts): --nj sets only
# how many processes do the work (as in Kaldi; egs/mini's local/data.sh makes the same bytes with
# any), so another --nj is not other settings.
without_nj() {
  sed -E 's/(^|[ =])--nj( +|=)[^ ]+( +|$)/\1/g; s/ +$//' <<<"$1"
}

# skip_done <stamp> <marker>...: true (and say so) when every marker exists and --force is false;
# otherwise remove the markers, so that an interrupted redo is never taken as done. <stamp> names
# the settings the stage's outputs depend on and what it reads (inputs_stamp); mark_done writes
# it into the markers. Outputs made with other settings, or from inputs made again since, stop the
# run instead of being taken for this run's, with how to redo it (deleting the marker, or
# $redo_how) and $redo_hint. Markers from before: an empty one (from before stamps) is taken as
# it is, one without inputs is compared without them. ran becomes true when a stage is (re)done.
ran=false
skip_done() {
  local stamp marker="" made changed how nl=$'\n'
  stamp=$(without_nj "$1")
  shift
  if ! $force; then
    for marker in "$@"; do [ -e "$marker" ] || break; done
    if [ -e "$marker" ]; then
      for marker in "$@"; do
        made=$(without_nj "$(head -n 1 "$marker")")
        [ -z "$made" ] || [ "$made" = "$stamp" ] || [[ $made != *" inputs:"* && $made = "${stamp% inputs:*}" ]] &&
          continue
        changed=$(changed_files "$made" "$stamp")
        how=${redo_how:-"Delete $marker to redo it (--force true redoes every stage and set in range)"}
        how+=${redo_hint:+", or $redo_hint"}
        die "$(dirname "$marker") was made with other settings or inputs than this run's, so it is not this" \
          "run's output:${nl}  then: $made${nl}  now:  $stamp${nl}${changed:+Changed since: $changed$nl}$how."
      done
      log "already done (delete $* or pass --force true to redo)"
      return 0
    fi
  fi
  rm -f "$@"
  ran=true
  return 1
}

# mark_done <stamp> <marker>...: the stage is done, with the settings <stamp> (the first line,
# which skip_done compares) and when (the second): a stage that reads the outputs has the whole
# marker in its stamp, so a redo, even with the same settings, makes what was made from the old
# outputs stale.
mark_done() {
  local stamp=$1 marker when
  shift
  when=$(date '+%Y-%m-%dT%H:%M:%S.%N')
  for marker in "$@"; do printf '%s\n# finished %s by pid %s\n' "$stamp" "$when" "$$" >"$marker"; done
}

# The settings a file contributes to a stamp: its name and checksum.
file_stamp() {
  echo "$1 (cksum $(cksum <"$1" | cut -d' ' -f1))"
}

# changed_files <then> <now>: the files of stamp <now> whose checksums are not those of stamp <then>.
changed_files() {
  comm -13 <(grep -o '[^ ]* (cksum [0-9]*)' <<<"$1" | sort) <(grep -o '[^ ]* (cksum [0-9]*)' <<<"$2" | sort) |
    sed 's/ (cksum [0-9]*)$//' | paste -sd ' ' -
}

# The files of a data directory: those its features are made from, and all of them (stage 2 copies
# them beside the features for the stages that read dump/<set>).
audio_files="wav.scp segments"
data_files="wav.scp segments text utt2spk spk2utt utt2dur tasks.jsonl"

# audio_stamp <data-dir>: the inputs part of a stamp for the audio files of a data directory.
audio_stamp() {
  local name paths=()
  for name in $audio_files; do paths+=("$1/$name"); done
  inputs_stamp "${paths[@]}"
}

# data_stamp <data-dir>: its files (those of $data_files it has) by checksum.
data_stamp() {
  local name
  for name in $data_files; do
    [ ! -e "$1/$name" ] || file_stamp "$1/$name"
  done | paste -sd ' ' -
}

# inputs_stamp <input>...: the part of a stamp that names a stage's inputs by checksum: the
# markers of the stages that made them (the features, the model it starts from, ...) and data
# directories (their files). Missing ones (a model given with --model_dir, made elsewhere) are
# left out.
inputs_stamp() {
  local input out="inputs:"
  for input in "$@"; do
    if [ -d "$input" ]; then
      out+=" $(data_stamp "$input")"
    elif [ -e "$input" ]; then
      out+=" $(file_stamp "$input")"
    fi
  done
  echo "$out"
}

# hold <dir>: lock <dir> for this run until the next hold (or the run's end, however it ends),
# through flock on the hidden file beside it (<parent>/.<name>.lock, which a forced redo's
# removal of <dir> keeps). A second run that would write the same directory at the same time
# (./run.sh started twice; decode.sh of the model run.sh is decoding) stops at once, naming the
# run that holds it, instead of mixing its files with that run's. Without flock, nothing is locked.
# A place where no lock can be taken (read-only, or a file system without flock support) is used
# unlocked, with a warning.
held=""
hold() {
  local lock status=0 made="" top=""
  lock=$(dirname "$1")/.$(basename "$1").lock
  [ -z "$held" ] || exec {held}>&-
  held="" held_target=""
  command -v flock >/dev/null || return 0
  # the folders mkdir makes for the lock: from its own (made) up to the highest missing one (top)
  [ -d "$(dirname "$1")" ] || made=$(dirname "$1")
  top=$made
  while [ -n "$top" ] && [ ! -d "$(dirname "$top")" ]; do top=$(dirname "$top"); done
  if ! mkdir -p "$(dirname "$1")" 2>/dev/null || ! true 2>/dev/null >>"$lock"; then
    log "warning: cannot write $lock: $1 is not locked against other runs"
    return 0
  fi
  exec {held}>>"$lock"
  flock -n -E 75 "$held" || status=$?
  if [ "$status" -eq 75 ]; then
    die "$1 is being written by another run ($(cat "$lock")): let it end, or stop it, first"
  elif [ "$status" -ne 0 ]; then
    log "warning: flock failed on $lock (exit $status; a file system without locks?): $1 is not locked"
    return 0
  fi
  echo "pid $$ on ${HOSTNAME:-$(uname -n)} since $(date '+%Y-%m-%dT%H:%M:%S'): $_command_line" >"$lock"
  held_target=$1 held_lock=$lock held_made=$made held_top=$top
}

# The model stages 8-10 use, and the stage that makes it (empty for --model_dir).
final_stage=$(previous_model_stage 8)
final_model=""
if [ -n "$model_dir" ]; then
  final_model=$(normal_path "$model_dir")
  final_stage=""
elif [ -n "$final_stage" ]; then
  final_model=${stage_exp[$final_stage]}
fi
decode_tag=decode_${tag:-$(basename "${decode_config%.*}")}
# The model's name in $expdir/<name>/decode_<tag> and $expdir/export/<name>: its path below
# $expdir with "/" written "_" and without a last /final (exp/stage4_vrpo: stage4_vrpo;
# exp/export/stage4_vrpo: export_stage4_vrpo; exp/stage3_sft/final: stage3_sft); a model outside
# $expdir: its folder's name.
final_name=${final_model%/final}
case "$final_name" in
  "$expdir"/*) final_name=${final_name#"$expdir"/} && final_name=${final_name//\//_} ;;
  *) final_name=$(basename "$final_name") ;;
esac
decode_root=$expdir/$final_name/$decode_tag  # the test sets' decoding directories are in it

# Fail before the first stage, not hours later, when a stage in range cannot run.
for n in $(seq "$stage" "$stop_stage"); do
  is_active "$n" || continue
  case "$n" in
    1 | 2) [ -n "$all_sets" ] || die "stage $n needs sets: pass --train_sets, --dev_set or --test_sets" ;;
    3 | 4 | 5 | 6 | 7) [ -n "${stage_sets[$n]}" ] || die "stage $n needs --train_sets" ;;
    8 | 9)
      [ -n "$test_sets" ] || die "stage $n needs --test_sets"
      [ -n "$decode_config" ] || die "stage $n needs --decode_config"
      ;;
  esac
  case "$n" in 3 | 4 | 5 | 7 | 8) config=${train_config[$n]:-$decode_config} ;; *) config="" ;; esac
  [ -z "$config" ] || [ -f "$config" ] || die "stage $n (${stage_names[$n]}): config $config not found"
  [ "$n" -ne 7 ] || [ -n "$(previous_model_stage 7)" ] ||
    die "stage 7 starts from a trained model: set --sft_config (or an earlier stage's config)"
  if [ "$n" -ge 8 ]; then
    [ -n "$final_model" ] || die "stage $n needs a model: set a training config or --model_dir"
    [ -n "$final_stage" ] || [ -d "$final_model" ] || die "--model_dir $final_model is not a directory"
  fi
  module=${entry_point[$n]:-}
  if [ -n "$module" ] && ! $python -c "import importlib.util as u, sys; sys.exit(u.find_spec('diffa.bin.$module') is None)" 2>/dev/null; then
    hint=""
    [ "$n" -le "$stage" ] || hint="; run the stages before it with --stop_stage $((n - 1))"
    die "stage $n (${stage_names[$n]}) needs diffa.bin.$module, which is not available yet$hint"
  fi
done

# Concatenate the per-job files <dir>/<prefix>.<j><suffix> (j = 1..$3) into <out> atomically.
concat_jobs() {
  local dir=$1 prefix=$2 n=$3 suffix=$4 out=$5 j
  for ((j = 1; j <= n; j++)); do
    cat "$dir/$prefix.$j$suffix" || die "job $j did not write $dir/$prefix.$j$suffix"
  done >"$out.tmp"
  mv "$out.tmp" "$out"
}

# Copy files atomically: copy_files <from-dir> <to-dir> <name>... (a name <from-dir> lacks is
# removed from <to-dir>: the copies are what <from-dir> has).
copy_files() {
  local from=$1 to=$2 name
  shift 2
  for name in "$@"; do
    if [ ! -f "$from/$name" ]; then
      rm -f "$to/$name"
      continue
    fi
    cp "$from/$name" "$to/$name.tmp"
    mv "$to/$name.tmp" "$to/$name"
  done
}

# fresh_jobs <dir> <stamp> <pattern>...: remove the per-job outputs <dir>/<pattern> when --force is
# true or when they were made with another stamp: another number of jobs (they cover other
# utterances then) or other settings (a rerun must not mix their outputs with new ones).
fresh_jobs() {
  local dir=$1 stamp=$2 pattern
  shift 2
  if $force || [ "$(cat "$dir/nj" 2>/dev/null)" != "$stamp" ]; then
    for pattern in "$@"; do rm -f "$dir"/$pattern; done
  fi
  mkdir -p "$dir"
  echo "$stamp" >"$dir/nj"
}

# Number of jobs for a data directory: --nj, or fewer when it has fewer utterances.
jobs_for() {
  local n_utts
  n_utts=$(wc -l <"$1/wav.scp")
  echo $((n_utts < nj ? n_utts : nj))
}

# The settings features depend on (stage 2's stamps add the audio files they are made from).
feats_stamp="n_mels=$n_mels dtype=$feats_dtype skip_bad=$skip_bad opts=$feats_opts"

# Stage 2 for one set: extract_feats <data-dir> <dump-dir> <stamp>
extract_feats() {
  local data=$1 out=$2 stamp=$3 njobs n_utts n_feats n_bad
  njobs=$(jobs_for "$data")
  fresh_jobs "$out/data" "$njobs $stamp" \
    'feats.*' 'utt2num_frames.*' 'bad_utts.*' '.done.*'
  rm -f "$out/feats.scp" "$out/utt2num_frames" "$out/bad_utts"  # an earlier run's, remade at the end
  $python utils/split_data.py "$data" "$njobs"
  # shellcheck disable=SC2086
  $feats_cmd --skip_if_exists "$out/data/.done.JOB" JOB=1:"$njobs" "$out/log/feats.JOB.log" \
    $python -m diffa.bin.extract_feats --data_dir "$data/split$njobs/JOB" --out_dir "$out" \
    --job JOB --n_mels "$n_mels" --feats_dtype "$feats_dtype" --skip_bad "$skip_bad" $feats_opts ||
    die "feature extraction of $data failed (logs: $out/log/feats.*.log)"
  concat_jobs "$out/data" feats "$njobs" .scp "$out/feats.scp"
  concat_jobs "$out/data" utt2num_frames "$njobs" "" "$out/utt2num_frames"
  concat_jobs "$out/data" bad_utts "$njobs" "" "$out/bad_utts"
  n_utts=$(wc -l <"$data/wav.scp")
  n_feats=$(wc -l <"$out/feats.scp")
  n_bad=$(wc -l <"$out/bad_utts")
  [ $((n_feats + n_bad)) -eq "$n_utts" ] ||
    die "$out/feats.scp has $n_feats utterances and $out/bad_utts $n_bad, but $data has $n_utts"
  [ "$n_bad" -eq 0 ] || log "$n_bad of $n_utts utterances have no features: see $out/bad_utts"
}

# need_feats <set>: stop unless stage 2 made the set's features from its audio as it is now and
# copied its files as they are now; else name what changed and how to redo stage 2. (Features
# without a data directory, e.g. copied from elsewhere, are taken as they are.)
need_feats() {
  local set=$1 made name changed=() list
  [ -e "$dumpdir/$set/.done" ] || die "missing $dumpdir/$set/.done: run stage 2 (feature extraction) for it:" \
    "./run.sh --stage 2 --stop_stage 2 --test_sets $set (sets already extracted are skipped)"
  [ -d "$datadir/$set" ] || return 0
  made=$(head -n 1 "$dumpdir/$set/.done")
  if [[ $made == *" inputs:"* ]] && [ "$(grep -o 'cksum [0-9]*' <<<"${made#* inputs:}")" != \
    "$(grep -o 'cksum [0-9]*' <<<"$(audio_stamp "$datadir/$set")")" ]; then
    changed=("the audio (${audio_files// /, })")
  fi
  for name in $data_files; do
    [ ! -e "$datadir/$set/$name" ] && [ ! -e "$dumpdir/$set/$name" ] || cmp -s "$datadir/$set/$name" \
      "$dumpdir/$set/$name" || [[ $name == wav.scp && ${#changed[@]} -gt 0 ]] || changed+=("$name")
  done
  [ ${#changed[@]} -eq 0 ] && return
  list=$(printf '%s; ' "${changed[@]}")
  die "$datadir/$set changed since stage 2 extracted its features (${list%; }). Run stage 2 again (./run.sh" \
    "--stage 2 --stop_stage 2 --test_sets $set; when the audio changed, delete $dumpdir/$set/.done first)"
}

# opts_sets <options>: the sets whose features (<dumpdir>/<set>) a stage's extra options name,
# e.g. make_pairs' --valid_data dump/dev; the stage checks and stamps them as its own sets.
opts_sets() {
  local word path
  for word in ${1//[,=]/ }; do
    path=$(normal_path "$word")
    [[ $path != "$dumpdir"/* || ${path#"$dumpdir"/} == */* || ! -d $path ]] || echo "${path#"$dumpdir"/}"
  done
}

# Stages 3, 4, 5 and 7: train_stage <n>
train_stage() {
  local n=$1 config=${train_config[$1]} out=${stage_exp[$1]} dumps init_stage init="" pairs="" set extra=() stamp inputs
  dumps=$(train_dumps "$n")
  init_stage=$(previous_model_stage "$n")
  [ -z "$init_stage" ] || init=${stage_exp[$init_stage]}
  [ "$n" -ne 7 ] || pairs=$pairs_dir
  log "Stage $n: ${stage_names[$n]}: ${dumps}${dev_set:+ + $dumpdir/$dev_set}${init:+ + $init}${pairs:+ + $pairs} -> $out"
  if [ -z "$config" ]; then
    log "skipped: no config for this stage"
    return 0
  fi
  hold "$out"
  stamp="config=$(file_stamp "$config") data=$dumps valid=${dev_set:+$dumpdir/$dev_set} init=$init"
  inputs=()
  for set in ${stage_sets[$n]} $dev_set $(opts_sets "$train_opts"); do
    need_feats "$set"  # (before skip_done: data edited since makes the stage stale, once stage 2 copied it)
    inputs+=("$dumpdir/$set/.done" "$dumpdir/$set")
  done
  # the model it starts from: the previous stage's, or the recipe hook's pretrained models
  if [ -n "$init" ]; then
    inputs+=("$init/.done")
  elif [ -x local/prepare_models.sh ]; then
    inputs+=("$expdir/pretrained/.done")
  fi
  [ -z "$pairs" ] || inputs+=("$pairs/.done")
  stamp+=" pairs=$pairs opts=$train_opts $(inputs_stamp "${inputs[@]}")"
  # A forced redo starts from scratch (training would otherwise resume from the old checkpoints).
  # The model it replaces, .done and all, is kept aside until the new one is trained: a typo in
  # the options must not cost a trained model. After a failed redo, what it left is removed.
  if $force && [ -d "$out" ]; then
    if [ -d "$out.replaced" ]; then
      log "--force true: removing $out (left by a failed redo; the model before it is in $out.replaced)"
      rm -rf "$out"
    else
      log "--force true: moving $out aside to $out.replaced until the new model is trained"
      mv "$out" "$out.replaced"
    fi
  fi
  # (deleting the marker would not do: training resumes from the checkpoints it finds)
  redo_how="Redo it with --stage $n --stop_stage $n --force true (from scratch; the later stages then stop as stale)" \
    redo_hint="another --expdir" skip_done "$stamp" "$out/.done" && return 0
  [ -z "$init" ] || need "$init/.done" "$init_stage"
  if [ -n "$pairs" ]; then
    # VRPO: the model it starts from is also the frozen reference.
    need "$pairs/.done" 6
    extra=(--ref_model "$init" --pairs "$pairs")
  fi
  # shellcheck disable=SC2086
  $train_cmd --gpu "$ngpu" --num_nodes "$num_nodes" "$out/log/train.log" \
    "${train_launcher[@]}" -m diffa.bin.train "$config" --output_folder "$out" --train_data "$dumps" \
    ${dev_set:+--valid_data "$dumpdir/$dev_set"} ${init:+--init_from "$init"} "${extra[@]}" $train_opts ||
    die "stage $n (${stage_names[$n]}) failed: see $out/log/train.log" \
      "$([ -d "$out.replaced" ] && echo "(the model trained before is in $out.replaced)")"
  mark_done "$stamp" "$out/.done"
  rm -rf "$out.replaced"
}

# The decoding directory of test set $1.
decode_dir() {
  echo "$decode_root/$1"
}

SECONDS=0
log "$_command_line"

if in_range 1; then
  log "Stage 1: ${stage_names[1]}: local/data.sh -> $datadir/{${all_sets// /,}}"
  hold "$datadir"
  markers=()
  for set in $all_sets; do markers+=("$datadir/$set/.validated"); done
  stamp="opts=$local_data_opts"
  if ! skip_done "$stamp" "${markers[@]}"; then
    [ -x local/data.sh ] || die "local/data.sh is missing or not executable: the recipe provides it"
    # shellcheck disable=SC2086
    local/data.sh --datadir "$datadir" $local_data_opts ||
      die "local/data.sh failed (see the messages above)"
    for set in $all_sets; do
      [ -d "$datadir/$set" ] || die "local/data.sh made no $datadir/$set: check --train_sets/--dev_set/--test_sets"
      $python utils/validate_data_dir.py "$datadir/$set" || die "$datadir/$set is not valid (see above)"
    done
    mark_done "$stamp" "${markers[@]}"
  fi
fi

# Stage 2 for one set. A set that local/data.sh made as a link to a set beside it (data/<set> ->
# <other>: e.g. one QA index serving two curriculum stages) gets dump/<set> -> <other>, so that its
# features are extracted once.
extracted=" "
stage2_set() {
  local set=$1 other=""
  case "$extracted" in *" $set "*) return ;; esac
  extracted+="$set "
  [ ! -L "$datadir/$set" ] || other=$(readlink "$datadir/$set")
  if [ -n "$other" ] && [[ $other != */* ]]; then
    stage2_set "$other"
    log "Stage 2: ${stage_names[2]}: $dumpdir/$set -> $other ($datadir/$set links to $other)"
    [ "$(readlink "$dumpdir/$set" 2>/dev/null)" = "$other" ] && return
    rm -rf "$dumpdir/$set"
    ln -s "$other" "$dumpdir/$set" || die "cannot link $dumpdir/$set to $other"
    return
  fi
  log "Stage 2: ${stage_names[2]}: $datadir/$set -> $dumpdir/$set/{feats.scp,utt2num_frames,bad_utts}"
  hold "$dumpdir/$set"
  [ ! -L "$dumpdir/$set" ] || rm "$dumpdir/$set"  # it stood for another set's features before
  need "$datadir/$set/wav.scp" 1
  stamp="$feats_stamp $(audio_stamp "$datadir/$set")"
  if ! skip_done "$stamp" "$dumpdir/$set/.done"; then
    extract_feats "$datadir/$set" "$dumpdir/$set" "$stamp"
    mark_done "$stamp" "$dumpdir/$set/.done"
  fi
  # The set's files beside its features, also when these were done: a question corrected in
  # tasks.jsonl needs no new features (the stages that read the copies stamp them). A file the set
  # no longer has goes too.
  copy_files "$datadir/$set" "$dumpdir/$set" $data_files
}

if in_range 2; then
  mkdir -p "$dumpdir"
  for set in $all_sets; do stage2_set "$set"; done
fi

if in_range 3; then
  if [ -x local/prepare_models.sh ]; then
    # Recipe hook: a recipe without downloadable checkpoints makes its pretrained Whisper, LLaDA
    # and tokenizer here (egs/mini trains tiny ones); idempotent.
    log "Stage 3: pretrained models: local/prepare_models.sh -> $expdir/pretrained"
    hold "$expdir/pretrained"
    local/prepare_models.sh --datadir "$datadir" --dumpdir "$dumpdir" --outdir "$expdir/pretrained" --nj "$nj" ||
      die "local/prepare_models.sh failed (see the messages above)"
  fi
  train_stage 3
fi

if in_range 4; then
  train_stage 4
fi

if in_range 5; then
  train_stage 5
fi

if in_range 6; then
  # Mode 'sampled' answers the rows with the model VRPO starts from, in a job that gets a GPU
  # as decoding jobs do.
  sampling=false sample_stage="" sample_opts=()
  [[ ,$pairs_modes, != *,sampled,* ]] || { sampling=true; sample_stage=$(previous_model_stage 6); }
  [ -z "$sample_stage" ] || sample_opts=(--model_dir "${stage_exp[$sample_stage]}")
  log "Stage 6: ${stage_names[6]}: $(train_dumps 6)${sample_stage:+ + ${stage_exp[$sample_stage]}} -> $pairs_dir"
  if ! is_active 6; then
    log "skipped: no --vrpo_config"
  else
    hold "$pairs_dir"
    stamp="data=$(train_dumps 6) modes=$pairs_modes model=${sample_opts[*]:1} opts=$pairs_opts"
    pairs_inputs=()
    for set in ${stage_sets[6]} $(opts_sets "$pairs_opts"); do
      need_feats "$set"  # (before skip_done, as in train_stage)
      pairs_inputs+=("$dumpdir/$set/.done" "$dumpdir/$set")
    done
    [ -z "$sample_stage" ] || pairs_inputs+=("${stage_exp[$sample_stage]}/.done")
    stamp+=" $(inputs_stamp "${pairs_inputs[@]}")"
    if ! skip_done "$stamp" "$pairs_dir/.done"; then
      gpu=0
      if $sampling; then
        [ -n "$sample_stage" ] || die "--pairs_modes $pairs_modes samples answers from a trained model, but stages 3-5 have no config"
        need "${stage_exp[$sample_stage]}/.done" "$sample_stage"
        gpu=$((ngpu > 0 ? 1 : 0))
      fi
      # shellcheck disable=SC2086
      $decode_cmd --gpu "$gpu" "$pairs_dir/log/make_pairs.log" \
        $python -m diffa.bin.make_pairs --train_data "$(train_dumps 6)" --out_dir "$pairs_dir" \
        --modes "$pairs_modes" "${sample_opts[@]}" $pairs_opts ||
        die "stage 6 (${stage_names[6]}) failed: see $pairs_dir/log/make_pairs.log"
      mark_done "$stamp" "$pairs_dir/.done"
    fi
  fi
fi

if in_range 7; then
  train_stage 7
fi

if in_range 8; then
  for set in $test_sets; do
    dir=$(decode_dir "$set")
    log "Stage 8: ${stage_names[8]}: $final_model + $dumpdir/$set -> $dir/results.jsonl"
    hold "$dir"
    stamp="model=${final_model%/final} config=$(file_stamp "$decode_config") opts=$decode_opts"
    stamp+=" $(inputs_stamp "${final_model%/final}/.done" "$dumpdir/$set/.done" "$datadir/$set")"
    redo_hint="--tag <name> to decode into decode_<name>" skip_done "$stamp" "$dir/.done" && continue
    [ -z "$final_stage" ] || need "$final_model/.done" "$final_stage"
    # (a set only decode.sh decodes, e.g. egs/diffa2's LibriSpeech tests, is not among run.sh's sets)
    need_feats "$set"
    njobs=$(jobs_for "$datadir/$set")
    fresh_jobs "$dir" "$njobs $stamp" 'results.*.jsonl' 'results.*.jsonl.partial'
    rm -f "$dir/results.jsonl"  # an earlier run's, remade from the jobs' files at the end
    $python utils/split_data.py "$datadir/$set" "$njobs"
    # shellcheck disable=SC2086
    $decode_cmd --gpu $((ngpu > 0 ? 1 : 0)) --skip_if_exists "$dir/results.JOB.jsonl" \
      JOB=1:"$njobs" "$dir/log/decode.JOB.log" $python -m diffa.bin.decode "$decode_config" \
      --model_dir "$final_model" --data_dir "$datadir/$set/split$njobs/JOB" \
      --feats_dir "$dumpdir/$set" --out "$dir/results.JOB.jsonl" $decode_opts ||
      die "decoding $set failed (logs: $dir/log/decode.*.log)"
    concat_jobs "$dir" results "$njobs" .jsonl "$dir/results.jsonl"
    mark_done "$stamp" "$dir/.done"
  done
fi

if in_range 9; then
  for set in $test_sets; do
    dir=$(decode_dir "$set")
    log "Stage 9: ${stage_names[9]}: $dir/results.jsonl + $datadir/$set -> $dir/score"
    hold "$dir"
    stamp="opts=$score_opts $(inputs_stamp "$dir/.done" "$datadir/$set")"  # the results and the references
    skip_done "$stamp" "$dir/score/.done" && continue
    need "$dir/.done" 8
    mkdir -p "$dir/score"
    # shellcheck disable=SC2086
    $python -m diffa.bin.score --results "$dir/results.jsonl" --data_dir "$datadir/$set" \
      --out_dir "$dir/score" $score_opts || die "scoring $dir failed"
    mark_done "$stamp" "$dir/score/.done"
  done
fi

if in_range 10; then
  out=$expdir/export/$final_name
  log "Stage 10: ${stage_names[10]}: $final_model -> $out"
  hold "$out"
  stamp="model=${final_model%/final} opts=$export_opts $(inputs_stamp "${final_model%/final}/.done")"
  if ! skip_done "$stamp" "$out/.done"; then
    [ -z "$final_stage" ] || need "$final_model/.done" "$final_stage"
    mkdir -p "$out"
    # shellcheck disable=SC2086
    $python -m diffa.bin.export --model_dir "$final_model" --out_dir "$out" $export_opts ||
      die "export of $final_model failed"
    mark_done "$stamp" "$out/.done"
  fi
fi

# Recipe hook (as in ESPnet): summarise the scored sets, e.g. into RESULTS.md; again only when a
# stage ran or its last call did not succeed (.summarised is written when it does).
summarised=$decode_root/.summarised
if in_range 9 && [ -x local/score.sh ]; then
  if ! $ran && [ -e "$summarised" ]; then
    log "every stage was done already: local/score.sh is not run again (delete $summarised to run it)"
  else
    rm -f "$summarised"
    local/score.sh --decode_dir "$decode_root" --model_dir "$final_model" \
      --stage "$stage" --elapsed "$SECONDS" || die "local/score.sh failed"
    mkdir -p "$decode_root" && touch "$summarised"
  fi
fi

log "Successfully finished stages $stage-$stop_stage [elapsed=${SECONDS}s]"
exit 0
}

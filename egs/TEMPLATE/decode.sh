#!/usr/bin/env bash
# Decode and score a recipe's test sets with one model, then write RESULTS.md. A recipe's
# decode.sh calls this with its sets and their decoding configs (--groups); run it from the
# recipe directory. For each decoding config it runs the recipe's ./run.sh --stage 8 --stop_stage 9:
# stage 8 decodes each set in --nj jobs through cmd.sh's decode_cmd (resumable: a re-run finishes
# what an interrupted one left), stage 9 scores it; then every scored set under --expdir goes into
# --results_md (python -m diffa.bin.score --write_results_md).
#
# Usage: ./decode.sh [options]
#   ./decode.sh --model_dir exp/stage4_vrpo           # every test set, each with its group's config
#   ./decode.sh --test_sets mmsu --decode_opts "--factor none" --tag quota16   # one set, quota rule
#   ./decode.sh --test_sets "mmau_test_mini mmar" --decode_config conf/my.yaml  # another config
#   ./decode.sh --stage 9                              # collect the scores again
#   ./decode.sh --force true                           # decode and score again what is done
# Results: <expdir>/<model>/decode_<tag>/<set>/{results.jsonl,settings.json,score/}; <tag> is the
# config's file name (decode_mcq, ...) unless --tag is given.

model_dir=""          # model to decode with (default: the last training stage's, as run.sh sets it)
test_sets=""          # sets to decode (default: every set of --groups)
decode_config=""      # config for all the sets (default: each set's config in --groups)
groups=""             # the recipe's "<config>=<set> <set>;<config>=<set> ..." (its decode.sh sets it);
                      # a set in none of them takes the config when there is only one
nj=4                  # decoding jobs per set
ngpu=0                # > 0: each decoding job asks its job runner for one GPU
tag=""                # results under decode_<tag> (default: the config's name)
decode_opts=""        # extra diffa.bin.decode options, e.g. "--batch_size 8" (any config key)
score_opts=""         # extra diffa.bin.score options
stage=8               # 8: decode, then score; 9: score only
stop_stage=9          # 8: decode only
force=false           # true: decode (stage 8) and score (9) again sets already done, as run.sh's --force
expdir=exp            # experiment directory (as run.sh's --expdir)
results_md=RESULTS.md # written from every scored set under --expdir after stage 9 (empty: skip)
python=""             # Python interpreter, passed to run.sh as --python (default: run.sh's, python3)
help_message=$(sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0")

log() {
  echo "$(date '+%Y-%m-%dT%H:%M:%S') (decode.sh:${BASH_LINENO[0]}) $*"
}

die() {
  echo "$(date '+%Y-%m-%dT%H:%M:%S') (decode.sh:${BASH_LINENO[0]}) ERROR: $*" >&2
  exit 1
}

# The repository's utils/ (through the recipe's symlink to this file), so --help works anywhere.
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../utils/parse_options.sh"
set -euo pipefail
[ $# -eq 0 ] || die "unexpected argument(s) '$*': decode.sh takes only options (see --help)"
[ -x run.sh ] && [ -f path.sh ] || die "no run.sh and path.sh here: run decode.sh from a recipe directory (egs/<recipe>)"
. ./path.sh
[[ $stage =~ ^(8|9)$ && $stop_stage =~ ^(8|9)$ && $stage -le $stop_stage ]] ||
  die "--stage/--stop_stage must be 8 (decode) or 9 (score), stage first; got $stage/$stop_stage"
[ -z "$model_dir" ] || [ -d "$model_dir" ] ||
  die "--model_dir $model_dir is not a directory: give a trained model (exp/<stage>) or an exported / imported one"

# config -> its sets, in the order the configs first appear
declare -A sets_of=()
configs=()
add() {
  [ -n "${sets_of[$1]+x}" ] || configs+=("$1")
  sets_of[$1]="${sets_of[$1]:-}${sets_of[$1]:+ }$2"
}
# config_of_set <set>: its config in --groups; for a set in none of them, the config when there is
# only one (empty otherwise).
config_of_set() {
  local group set
  IFS=';' read -r -a all <<<"$groups"
  for group in "${all[@]}"; do
    for set in ${group#*=}; do
      if [ "$set" = "$1" ]; then
        echo "${group%%=*}"
        return
      fi
    done
  done
  [ "${#all[@]}" -ne 1 ] || [[ ${all[0]} != *=* ]] || echo "${all[0]%%=*}"
}
if [ -n "$test_sets" ]; then
  for set in $test_sets; do
    config=${decode_config:-$(config_of_set "$set")}
    [ -n "$config" ] || die "no decoding config for set '$set' (not in --groups \"$groups\"): pass --decode_config"
    add "$config" "$set"
  done
else
  [ -n "$groups" ] || die "nothing to decode: pass --test_sets (and --decode_config) or --groups"
  IFS=';' read -r -a all <<<"$groups"
  for group in "${all[@]}"; do
    for set in ${group#*=}; do add "${decode_config:-${group%%=*}}" "$set"; done
  done
fi

force_opt=()
[ "$force" = false ] || force_opt=(--force "$force")
for config in "${configs[@]}"; do
  [ -f "$config" ] || die "decoding config $config not found"
  log "decoding ${sets_of[$config]} with $config${model_dir:+ and $model_dir} (stages $stage-$stop_stage)"
  # Only the options given here: an empty one would override what the recipe's run.sh sets
  # (egs/mini's --score_opts "--group_by asks").
  ./run.sh --stage "$stage" --stop_stage "$stop_stage" --test_sets "${sets_of[$config]}" \
    --decode_config "$config" --nj "$nj" --ngpu "$ngpu" --expdir "$expdir" ${tag:+--tag "$tag"} \
    ${decode_opts:+--decode_opts "$decode_opts"} ${score_opts:+--score_opts "$score_opts"} \
    ${model_dir:+--model_dir "$model_dir"} ${python:+--python "$python"} "${force_opt[@]}" ||
    die "decoding or scoring ${sets_of[$config]} with $config failed (see the messages above)"
done

if [ "$stop_stage" -ge 9 ] && [ -n "$results_md" ]; then
  mapfile -t decode_dirs < <(find "$expdir" -path '*/decode_*/*/score/scores.json' | sed 's|/[^/]*/score/scores.json$||' | sort -u)
  [ ${#decode_dirs[@]} -gt 0 ] || die "no scored set under $expdir"
  "${python:-python3}" -m diffa.bin.score --write_results_md "$results_md" --decode_dirs "${decode_dirs[@]}" \
    --title "$(basename "$PWD") results" || die "writing $results_md failed"
  log "wrote $results_md"
fi

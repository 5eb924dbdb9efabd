#!/usr/bin/env bash
# flickr8k.sh: the Flickr8k reproduction (README "Caption quality", docs/FLICKR8K.md).
#
#   scripts/flickr8k.sh attention|baseline [SEED...]     (make flickr8k runs both, seed 1)
#
# For each seed: captiongo trains experiments/flickr8k_<recipe>.toml as run
# runs/flickr8k_<recipe> (seed 1, as make train names it) or runs/flickr8k_<recipe>_s<seed>, scores
# the 1,000 test images greedily and with beam 3 (captiongo eval), then the PyTorch reference (bench/flickr8k_ref.py)
# trains the same recipe on the same cached features, vocabulary and split and
# scores the same images. Every step's wall time goes to runs/<run>/times.txt; a
# step already done is skipped, so the script resumes where it stopped.
# REF=0 skips the PyTorch side; EPOCHS=n overrides the recipe's epochs (both sides).
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:?usage: scripts/flickr8k.sh attention|baseline [SEED...]}
shift
seeds=("${@:-1}")
[ -f "experiments/flickr8k_$recipe.toml" ] || { echo "flickr8k.sh: no experiments/flickr8k_$recipe.toml" >&2; exit 2; }
PY=${CAPTIONGO_PYTHON:-.venv/bin/python}
if [ -z "${BIN:-}" ]; then # build first: a stale bin/captiongo once ran old code here
  BIN=bin/captiongo
  make --no-print-directory -s build >/dev/null
fi
sets=()
[ -n "${EPOCHS:-}" ] && sets+=(-set "epochs=$EPOCHS")

timed() { # timed RUN_DIR STEP CMD...: runs CMD unless RUN_DIR/STEP.done exists; logs its wall time
  local dir=$1 step=$2; shift 2
  [ -f "$dir/$step.done" ] && return 0
  local t0; t0=$(date +%s)
  "$@"
  echo "$step $(( $(date +%s) - t0 )) s" >> "$dir/times.txt"
  touch "$dir/$step.done"
}

for seed in "${seeds[@]}"; do
  name=flickr8k_$recipe
  [ "$seed" = 1 ] || name=${name}_s$seed
  run=runs/$name
  mkdir -p "$run"
  timed "$run" train bash -c "$BIN train -config experiments/flickr8k_$recipe.toml -set name=$name \
    -set seed=$seed -set resume=true ${sets[*]} | tee -a $run/train.log"
  for beam in 1 3; do
    timed "$run" "eval_beam$beam" bash -c "$BIN eval -checkpoint $run -split test -beam $beam \
      -out $run/results_test_beam$beam.json > $run/scores_test_beam$beam.json"
    cat "$run/scores_test_beam$beam.json"
  done
  if [ "${REF:-1}" = 1 ]; then
    cache=$(sed -n 's/^feature cache: \(.*\) ([0-9]* images.*/\1/p' "$run/train.log" | tail -n1)
    [ -f "$cache" ] || { echo "flickr8k.sh: no feature cache named in $run/train.log" >&2; exit 1; }
    ref=runs/flickr8k_ref/${recipe}_s$seed
    mkdir -p "$ref"
    timed "$ref" reference "$PY" bench/flickr8k_ref.py "$run" "$cache" "$ref" --seed "$seed" ${EPOCHS:+--epochs $EPOCHS}
    "$PY" -c 'import json,sys; d=json.load(open(sys.argv[1]))
print(json.dumps({k: d[k] for k in ("greedy", "beam3", "train_seconds")}))' "$ref/scores.json"
  fi
done

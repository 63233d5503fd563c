#!/usr/bin/env bash
# Face crop -> k-fold training -> fold ensemble prediction, in one go.
#
# Usage: [RAW=DIR] [FACES=DIR] [NAME=RUN] [RUNS_DIR=DIR] [ACCELERATE_ARGS="..."] launch/pipeline.sh [key=value ...]
#   e.g. RAW=/data/mask FACES=/data/mask_faces NAME=effb0 \
#        ACCELERATE_ARGS="--config_file launch/accelerate/gpu_n_bf16.yaml" \
#        launch/pipeline.sh model.name=efficientnet_b0 train.epochs=15
#
#   RAW              competition-layout data set to crop (default data/mask)
#   FACES            where the face crops go, same layout (default data/mask_faces)
#   NAME             run name: the run folder is RUNS_DIR/NAME (default faces-<timestamp>)
#   RUNS_DIR         run output root (default runs); set this rather than a run.dir= override
#   ACCELERATE_ARGS  flags for accelerate launch, split on spaces (default none: accelerate's defaults,
#                    e.g. "--config_file launch/accelerate/cpu_2proc.yaml" for 2 CPU processes)
# Arguments go to foldtrain/main.py as config overrides (after data.root, run.dir and run.name).
# Re-running is cheap up to the training step: the face crop skips images it has already written.
# Training refuses a run folder that already holds results: pick a new NAME (or pass train.resume=true).

set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,17p' "$0"
    exit 0
fi

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAW="${RAW:-data/mask}"
FACES="${FACES:-data/mask_faces}"
NAME="${NAME:-faces-$(date +%Y%m%d-%H%M%S)}"
RUNS_DIR="${RUNS_DIR:-runs}"
ACCELERATE_ARGS="${ACCELERATE_ARGS:-}"
read -r -a accelerate_args <<< "$ACCELERATE_ARGS"

echo "==> [1/3] face crop: $RAW -> $FACES (images already cropped are skipped)"
python -m foldtrain.facecrop --src "$RAW" --dst "$FACES"

echo "==> [2/3] train: accelerate launch ${ACCELERATE_ARGS} foldtrain/main.py data.root=$FACES run.dir=$RUNS_DIR run.name=$NAME $*"
accelerate launch ${accelerate_args[@]+"${accelerate_args[@]}"} "$REPO/foldtrain/main.py" \
    data.root="$FACES" run.dir="$RUNS_DIR" run.name="$NAME" "$@"

echo "==> [3/3] predict: fold ensemble of $RUNS_DIR/$NAME on $FACES/eval"
python -m ensemble.predict --run "$RUNS_DIR/$NAME" --data "$FACES/eval"

echo "==> done: $RUNS_DIR/$NAME/submission.csv"

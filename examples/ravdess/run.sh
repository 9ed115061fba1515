#!/usr/bin/env bash
# MEmoBERT on RAVDESS speech, eight classes, speaker-independent folds (one actor tested per fold):
#   1. the manifest from the Actor_01 .. Actor_24 folders (audio-only wavs and/or audio-video mp4s),
#      the statement from the file name; songs are excluded
#   2. text, speech (wav2vec 2.0) and face (FER DenseNet) features (memobert-prepare)
#   3. leave-one-actor-out cross-validation (24 folds) and the WA / UAR table (memobert-cv)
#
#   RAVDESS=/data/RAVDESS BERT=... WAV2VEC2=... FER_MODEL=... [PRETRAINED=...] bash examples/ravdess/run.sh
#
# The knobs are listed in examples/common.sh; examples/ravdess/README.md explains the layout read.
set -euo pipefail
RECIPE=ravdess
LABELS=anger,calm,disgust,fear,happy,neutral,sad,surprise
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
: "${RAVDESS:?set RAVDESS to the folder of Actor_01 .. Actor_24}"

echo "== 1/3 manifest from $RAVDESS -> $OUT/manifest"
python -m memobert_plugin.prepare.corpora ravdess --root "$RAVDESS" --out "$OUT/manifest"

echo "== 2/3 features -> $OUT/data"
prepare_split all "$OUT/manifest/manifest.tsv"

echo "== 3/3 cross-validation -> $OUT/cv"
cross_validate ravdess --emotion-labels "$LABELS"

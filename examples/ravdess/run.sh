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
MANIFEST_ARGS=(--root "$RAVDESS")
emotion_recipe --emotion-labels "$LABELS"

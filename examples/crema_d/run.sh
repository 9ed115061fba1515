#!/usr/bin/env bash
# MEmoBERT on CREMA-D, six classes, speaker-independent folds (one actor tested per fold):
#   1. the manifest from the release: AudioWAV/*.wav and VideoFlash/*.flv, the sentence from the file name
#   2. text, speech (wav2vec 2.0) and face (FER DenseNet) features (memobert-prepare)
#   3. leave-one-actor-out cross-validation and the WA / UAR table (memobert-cv)
#
#   CREMA_D=/data/CREMA-D BERT=... WAV2VEC2=... FER_MODEL=... [PRETRAINED=...] [FOLDS=1-10] bash examples/crema_d/run.sh
#
# 91 actors make 91 folds; FOLDS runs some of them. The knobs are listed in examples/common.sh;
# examples/crema_d/README.md explains the layout read and what is reported.
set -euo pipefail
RECIPE=crema_d
LABELS=anger,disgust,fear,happy,neutral,sad
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
: "${CREMA_D:?set CREMA_D to the CREMA-D folder (AudioWAV/, VideoFlash/)}"
MANIFEST_ARGS=(--root "$CREMA_D")
emotion_recipe --emotion-labels "$LABELS"

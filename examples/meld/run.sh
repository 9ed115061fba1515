#!/usr/bin/env bash
# MEmoBERT on MELD, its official train/dev/test split, 7 emotions (or TARGET=sentiment: 3 sentiments):
#   1. the manifest from MELD.Raw: the three *_sent_emo.csv files, the clips, their decoded sound
#   2. text, speech (wav2vec 2.0) and face (FER DenseNet) features (memobert-prepare)
#   3. train on train, select on dev by weighted F1, test on test, per seed; the table (memobert-cv)
#
#   MELD=/data/MELD.Raw BERT=... WAV2VEC2=... FER_MODEL=... [PRETRAINED=...] [TARGET=sentiment] bash examples/meld/run.sh
#
# The knobs (BERT, WAV2VEC2, FER_MODEL, PRETRAINED, OUT, SETTINGS, SEEDS, ...) are listed in
# examples/common.sh; examples/meld/README.md explains the layout read and what is excluded.
set -euo pipefail
RECIPE=meld
TARGET=${TARGET:-emotion}
case $TARGET in
    emotion) LABELS=anger,disgust,fear,joy,neutral,sadness,surprise ;;
    sentiment) LABELS=negative,neutral,positive ;;
    *) echo "TARGET must be emotion or sentiment, not $TARGET" >&2; exit 2 ;;
esac
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
: "${MELD:?set MELD to the MELD.Raw folder (train_sent_emo.csv, train_splits/, ...)}"

MANIFEST_ARGS=(--root "$MELD" --target "$TARGET")
emotion_recipe --emotion-labels "$LABELS" --best-checkpoint-metric weighted_f1  # weighted F1: MELD's headline

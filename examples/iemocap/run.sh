#!/usr/bin/env bash
# MEmoBERT on IEMOCAP, four classes (excited merged into happy), from the release folder to the table:
#   1. the manifest from IEMOCAP_full_release: labels, transcripts, dialog wav + avi with the utterance times
#   2. text, speech (wav2vec 2.0) and face (FER DenseNet) features (memobert-prepare)
#   3. 10-fold speaker-independent cross-validation and the WA / UAR table (memobert-cv)
#
#   IEMOCAP=/data/IEMOCAP_full_release BERT=... WAV2VEC2=... FER_MODEL=... [PRETRAINED=...] bash examples/iemocap/run.sh
#
# The knobs (BERT, WAV2VEC2, FER_MODEL, PRETRAINED, OUT, SETTINGS, FOLDS, SEEDS, ...) are listed in
# examples/common.sh; examples/iemocap/README.md explains the layout read and what is excluded.
set -euo pipefail
RECIPE=iemocap
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
: "${IEMOCAP:?set IEMOCAP to the IEMOCAP_full_release folder (Session1 .. Session5)}"

echo "== 1/3 manifest from $IEMOCAP -> $OUT/manifest"
python -m memobert_plugin.prepare.corpora iemocap --root "$IEMOCAP" --out "$OUT/manifest"

echo "== 2/3 features -> $OUT/data"
prepare_split all "$OUT/manifest/manifest.tsv"

echo "== 3/3 cross-validation -> $OUT/cv"
cross_validate iemocap

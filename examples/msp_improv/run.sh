#!/usr/bin/env bash
# MEmoBERT on MSP-IMPROV, four classes, from the release folder to the table:
#   1. the manifest from MSP-IMPROV: consensus labels of Evalution.txt, your transcripts, Audio/ and Video/
#   2. text, speech (wav2vec 2.0) and face (FER DenseNet) features (memobert-prepare)
#   3. 12-fold speaker-independent cross-validation and the WA / UAR table (memobert-cv)
#
#   MSP_IMPROV=/data/MSP-IMPROV TRANSCRIPTS=asr.tsv BERT=... WAV2VEC2=... FER_MODEL=... [PRETRAINED=...] \
#       bash examples/msp_improv/run.sh
#
# TRANSCRIPTS: the release has no transcripts; a TSV with columns id (MSP-IMPROV-S01A-F01-S-FM01) and text.
# MSP_TYPES: recording types kept (default S: the paper's 3819 utterances; P,R,S,T: all 7798).
# The other knobs are listed in examples/common.sh; examples/msp_improv/README.md explains the layout read.
set -euo pipefail
RECIPE=msp_improv
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
: "${MSP_IMPROV:?set MSP_IMPROV to the MSP-IMPROV folder (Evalution.txt, Audio/, Video/)}"
: "${TRANSCRIPTS:?set TRANSCRIPTS to a TSV with columns id and text (the release has no transcripts)}"
MSP_TYPES=${MSP_TYPES:-S}

echo "== 1/3 manifest from $MSP_IMPROV (recording types $MSP_TYPES) -> $OUT/manifest"
python -m memobert_plugin.prepare.corpora msp_improv --root "$MSP_IMPROV" --transcripts "$TRANSCRIPTS" \
    --types "$MSP_TYPES" --out "$OUT/manifest"

echo "== 2/3 features -> $OUT/data"
prepare_split all "$OUT/manifest/manifest.tsv"

echo "== 3/3 cross-validation -> $OUT/cv"
cross_validate msp_improv

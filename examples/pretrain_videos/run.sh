#!/usr/bin/env bash
# Pretrain MEmoBERT on your own videos with subtitles (the paper used 351 films and series):
#   1. train and valid manifests from VIDEOS/<name>.mp4|.mkv|.avi + <name>.srt, one utterance per cue
#      (whole videos are held out for validation), and each video's audio track as a 16 kHz wav
#   2. text, speech (wav2vec 2.0) and face (FER DenseNet, active speaker) features (memobert-prepare)
#   3. pretraining from BERT with WWMLM, SpanMVFR, SpanMVFC-KL and SpanMAFR (fairseq-train)
#
#   VIDEOS=/data/films BERT=... WAV2VEC2=... FER_MODEL=... bash examples/pretrain_videos/run.sh
#
# Knobs: VALID_FRACTION (default 0.05 of the videos), UPDATES (40000), WARMUP (4000), LR (5e-5),
# MAX_TOKENS (20000 per batch, all modalities counted); the shared ones are in examples/common.sh.
# The checkpoint then goes to the emotion recipes: PRETRAINED=$OUT/pretrain/checkpoint_best.pt.
set -euo pipefail
RECIPE=pretrain_videos
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"
: "${VIDEOS:?set VIDEOS to a folder of videos with same-name .srt subtitles}"
VALID_FRACTION=${VALID_FRACTION:-0.05}
UPDATES=${UPDATES:-40000}
WARMUP=${WARMUP:-4000}
LR=${LR:-5e-5}
MAX_TOKENS=${MAX_TOKENS:-20000}
PLUGIN=$(python -c 'import memobert_plugin, os; print(os.path.dirname(memobert_plugin.__file__))')

echo "== 1/3 manifests and audio tracks from $VIDEOS -> $OUT/manifest"
python -m memobert_plugin.prepare.corpora videos --root "$VIDEOS" --valid-fraction "$VALID_FRACTION" \
    --out "$OUT/manifest"

echo "== 2/3 features -> $OUT/data"
for split in train valid; do
    prepare_split "$split" "$OUT/manifest/$split.tsv"
done

echo "== 3/3 pretraining for $UPDATES updates -> $OUT/pretrain"
fairseq-train "$OUT/data" --user-dir "$PLUGIN" \
    --task memobert_pretrain --arch memobert_base --criterion memobert_pretrain --bert-init "$BERT" \
    --objectives wwmlm,span_mvfr,span_mvfc_kl,span_mafr --objective-ratios '[0.4,0.2,0.2,0.2]' \
    --optimizer adam --adam-betas '(0.9,0.98)' --weight-decay 0.01 --clip-norm 5 \
    --lr "$LR" --lr-scheduler polynomial_decay --warmup-updates "$WARMUP" \
    --total-num-update "$UPDATES" --max-update "$UPDATES" --max-tokens "$MAX_TOKENS" --seed 1 \
    --save-dir "$OUT/pretrain" --no-epoch-checkpoints --log-format simple --log-interval 100
echo "pretrained checkpoint: $OUT/pretrain/checkpoint_best.pt (PRETRAINED for examples/iemocap and examples/msp_improv)"

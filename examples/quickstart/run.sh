#!/usr/bin/env bash
# MEmoBERT quickstart on the embedded demo corpus, on CPU:
#   1. write the deterministic demo corpus (text + face + voice features, 10 speakers in 5 sessions)
#   2. pretrain memobert_tiny with the four objectives (fairseq-train, ~1.5 min on 2 cores)
#   3. cross-validate Pretrain+Prompt, Pretrain+Finetune and Direct on 2 folds and print the table
# Everything goes to $OUT (default ./quickstart-output); rerunning resumes where it stopped.
set -euo pipefail

OUT=${OUT:-$PWD/quickstart-output}
PRETRAIN_UPDATES=${PRETRAIN_UPDATES:-1000}
FOLDS=${FOLDS:-1,2}
PLUGIN=$(python -c 'import memobert_plugin, os; print(os.path.dirname(memobert_plugin.__file__))')

echo "== 1/3 demo corpus -> $OUT/demo"
memobert-demo-corpus "$OUT/demo"

echo "== 2/3 pretraining memobert_tiny for $PRETRAIN_UPDATES updates -> $OUT/pretrain"
fairseq-train "$OUT/demo/pretrain" --user-dir "$PLUGIN" \
    --task memobert_pretrain --arch memobert_tiny --criterion memobert_pretrain \
    --objectives wwmlm,span_mvfr,span_mvfc_kl,span_mafr --objective-ratios '[0.4,0.2,0.2,0.2]' \
    --optimizer adam --adam-betas '(0.9,0.98)' --weight-decay 0.01 --clip-norm 5 \
    --lr 5e-4 --lr-scheduler polynomial_decay --warmup-updates 100 \
    --total-num-update "$PRETRAIN_UPDATES" --max-update "$PRETRAIN_UPDATES" \
    --batch-size 32 --num-workers 0 --seed 1 \
    --save-dir "$OUT/pretrain" --no-epoch-checkpoints --log-format simple --log-interval 100
echo "pretrained checkpoint: $OUT/pretrain/checkpoint_best.pt"

echo "== 3/3 emotion recognition, folds $FOLDS -> $OUT/cv"
memobert-cv run --out "$OUT/cv" --corpus demo="$OUT/demo/emotion" \
    --settings direct,pretrain_finetune,pretrain_prompt --pretrained "$OUT/pretrain/checkpoint_best.pt" \
    --folds "$FOLDS" --seeds 1 --arch memobert_tiny --lr 5e-4 --max-epoch 10
echo "tables: $OUT/cv/results.md, $OUT/cv/results.csv"

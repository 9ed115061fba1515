#!/usr/bin/env bash
# MEmoBERT quickstart on the generative demo world, on CPU (~10 min on 2 cores):
#   1. write the demo world: 20,000 unlabelled utterances for pretraining and a labelled split laid
#      out like IEMOCAP (0.15 of its size), text + face + voice features driven by one emotion
#   2. pretrain memobert_tiny with the four objectives (fairseq-train, 4,000 updates)
#   3. cross-validate Direct, Pretrain+Finetune and Pretrain+Prompt with 5% and 100% of the
#      training speakers' labels, and Pretrain+Prompt with none (zero-shot), on 2 folds; print the
#      Table-2-style table and draw the low-resource figure (Fig. 3)
# Everything goes to $OUT (default ./quickstart-output); rerunning resumes where it stopped.
# Knobs (environment): SEED, FOLDS, FRACTIONS, SETTINGS, PRETRAIN_UPDATES, LABELLED_SCALE, PRETRAIN_UTTERANCES,
#   WORLD (an existing demo world to reuse instead of writing one), WORLD_ARGS (e.g. --shuffle-links,
#   the negative control), PRETRAIN_ARGS (extra pretraining options, e.g. Table 3's ablations),
#   CV_ARGS (extra memobert-cv run options, e.g. --prompt-loss label_words).
set -euo pipefail

OUT=${OUT:-$PWD/quickstart-output}
SEED=${SEED:-1}
PRETRAIN_UPDATES=${PRETRAIN_UPDATES:-4000}
LABELLED_SCALE=${LABELLED_SCALE:-0.15}
PRETRAIN_UTTERANCES=${PRETRAIN_UTTERANCES:-20000}
FOLDS=${FOLDS:-1,2}
FRACTIONS=${FRACTIONS:-0,0.05,1}
SETTINGS=${SETTINGS:-direct,pretrain_finetune,pretrain_prompt}
WORLD_ARGS=${WORLD_ARGS:-}
PRETRAIN_ARGS=${PRETRAIN_ARGS:-}
CV_ARGS=${CV_ARGS:-}
PLUGIN=$(python -c 'import memobert_plugin, os; print(os.path.dirname(memobert_plugin.__file__))')

if [[ -n ${WORLD:-} ]]; then
    echo "== 1/3 demo world: reusing $WORLD"
else
    WORLD=$OUT/demo
    echo "== 1/3 demo world (seed $SEED) -> $WORLD"
    # shellcheck disable=SC2086  # WORLD_ARGS is a list of options
    memobert-demo-corpus "$WORLD" --seed "$SEED" --labelled-scale "$LABELLED_SCALE" \
        --pretrain-utterances "$PRETRAIN_UTTERANCES" $WORLD_ARGS
fi

echo "== 2/3 pretraining memobert_tiny for $PRETRAIN_UPDATES updates -> $OUT/pretrain"
# shellcheck disable=SC2086  # PRETRAIN_ARGS is a list of options
fairseq-train "$WORLD/pretrain" --user-dir "$PLUGIN" \
    --task memobert_pretrain --arch memobert_tiny --criterion memobert_pretrain \
    --objectives wwmlm,span_mvfr,span_mvfc_kl,span_mafr --objective-ratios '[0.4,0.2,0.2,0.2]' \
    --optimizer memobert_adam --adam-betas '(0.9,0.98)' --weight-decay 0.01 --clip-norm 5 \
    --lr 1e-3 --lr-scheduler polynomial_decay --warmup-updates 100 \
    --total-num-update "$PRETRAIN_UPDATES" --max-update "$PRETRAIN_UPDATES" \
    --batch-size 32 --num-workers 0 --seed "$SEED" \
    --save-dir "$OUT/pretrain" --no-epoch-checkpoints --log-format simple --log-interval 100 $PRETRAIN_ARGS
echo "pretrained checkpoint: $OUT/pretrain/checkpoint_best.pt"

echo "== 3/3 emotion recognition: $SETTINGS, fractions $FRACTIONS, folds $FOLDS -> $OUT/cv"
# shellcheck disable=SC2086  # CV_ARGS is a list of options
memobert-cv run --out "$OUT/cv" --corpus demo="$WORLD/emotion" \
    --settings "$SETTINGS" --pretrained "$OUT/pretrain/checkpoint_best.pt" \
    --folds "$FOLDS" --seeds "$SEED" --fractions "$FRACTIONS" --arch memobert_tiny --lr 5e-4 --max-epoch 10 \
    --lr-schedule warmup_linear $CV_ARGS
echo "table: $OUT/cv/results.md (and results.csv)"
if [[ -f $OUT/cv/low_resource.png ]]; then echo "low-resource figure: $OUT/cv/low_resource.png"; fi
# fairseq-hydra-train form of one quickstart cross-validation job (Pretrain+Prompt, fold 1, seed 1;
# examples/quickstart/run.sh step 3 runs it through memobert-cv):
#   fairseq-hydra-train --config-dir examples/quickstart/config --config-name emotion_prompt \
#       task.data=$OUT/demo/emotion common.user_dir=$PWD/memobert_plugin \
#       model.memobert_init=$OUT/pretrain/checkpoint_best.pt checkpoint.save_dir=$OUT/prompt_fold1 task.fold=1
# Test the chosen checkpoint with: fairseq-validate $OUT/demo/emotion --user-dir memobert_plugin
#   --task memobert_emotion --path $OUT/prompt_fold1/checkpoint_best.pt --valid-subset test --batch-size 32

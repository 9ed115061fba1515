# Shared by the corpus recipes (sourced after RECIPE is set): the model knobs, feature extraction
# and the cross-validation sweep. Every knob is an environment variable with the paper's default.
#   BERT       Hugging Face bert-base-uncased folder: its vocab.txt is the vocabulary, and it
#              initialises bert_direct (and pretraining)                                  (required)
#   WAV2VEC2   wav2vec 2.0 base checkpoint (fairseq wav2vec_small.pt or a Hugging Face folder) (required)
#   FER_MODEL  facial-expression DenseNet from memobert-train-fer                           (required)
#   OUT        where everything goes (default ./$RECIPE-output); a rerun resumes where it stopped
#   WORKERS    feature-extraction processes (default 1); DEVICE torch device (default cuda if available)
#   LABELS     the classes memobert-prepare keeps (set by each recipe; default the paper's four)
#   FEATURE_STATS  whose mean/std standardise the stored features (memobert-prepare --feature-stats):
#              auto (default: the data dir's first split), or the pretraining corpus's data dir
#              (e.g. pretrain_videos-output/data) when PRETRAINED was pretrained on it (docs/prepare.md)
: "${BERT:?set BERT to a Hugging Face bert-base-uncased folder (config.json, weights, vocab.txt)}"
: "${WAV2VEC2:?set WAV2VEC2 to a wav2vec 2.0 checkpoint (wav2vec_small.pt or a Hugging Face folder)}"
: "${FER_MODEL:?set FER_MODEL to a facial-expression checkpoint from memobert-train-fer}"
OUT=${OUT:-$PWD/$RECIPE-output}
WORKERS=${WORKERS:-1}
LABELS=${LABELS:-anger,happy,neutral,sad}
DEVICE=${DEVICE:-$(python -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
FEATURE_STATS=${FEATURE_STATS:-auto}

# prepare_split SPLIT MANIFEST: text, speech and face features of MANIFEST into $OUT/data
prepare_split() {
    local split=$1 manifest=$2
    memobert-prepare all --manifest "$manifest" --split "$split" --out "$OUT/data" --vocab "$BERT/vocab.txt" \
        --wav2vec2 "$WAV2VEC2" --fer-model "$FER_MODEL" --workers "$WORKERS" --device "$DEVICE" --labels "$LABELS" \
        --feature-stats "$FEATURE_STATS"
}

# cross_validate CORPUS [FAIRSEQ-TRAIN ARGS...]: cross-validation on $OUT/data (speaker folds, or the
# corpus's own split where all.meta.tsv gives subsets), then the results table; the arguments after
# CORPUS go to every fold's fairseq-train (e.g. --emotion-labels for other classes than the paper's).
#   PRETRAINED  memobert_pretrain checkpoint (e.g. from examples/pretrain_videos); adds the
#               pretrain_finetune and pretrain_prompt settings
#   SETTINGS    comma-separated (default: direct,bert_direct and, with PRETRAINED, the pretrain_* ones)
#   FOLDS       'all' (default: one per speaker, or the fixed split's one), '1,2' or '1-4'   SEEDS  default 1,2,3
#   ARCH, LR, MAX_EPOCH, BATCH_SIZE  default memobert_base, 5e-5, 15, 32 (the shape comes from
#               BERT or PRETRAINED when a setting starts from one)
cross_validate() {
    local corpus=$1
    PRETRAINED=${PRETRAINED:-}
    SETTINGS=${SETTINGS:-direct,bert_direct${PRETRAINED:+,pretrain_finetune,pretrain_prompt}}
    FOLDS=${FOLDS:-all}
    SEEDS=${SEEDS:-1,2,3}
    ARCH=${ARCH:-memobert_base}
    LR=${LR:-5e-5}
    MAX_EPOCH=${MAX_EPOCH:-15}
    BATCH_SIZE=${BATCH_SIZE:-32}
    local pretrained_args=() train_args=()
    if [[ -n $PRETRAINED ]]; then pretrained_args=(--pretrained "$PRETRAINED"); fi
    if (($# > 1)); then train_args=(-- "${@:2}"); fi
    memobert-cv run --out "$OUT/cv" --corpus "$corpus=$OUT/data" --settings "$SETTINGS" --bert-init "$BERT" \
        --folds "$FOLDS" --seeds "$SEEDS" --arch "$ARCH" --lr "$LR" --max-epoch "$MAX_EPOCH" \
        --batch-size "$BATCH_SIZE" "${pretrained_args[@]}" "${train_args[@]}"
    echo "tables: $OUT/cv/results.md, $OUT/cv/results.csv"
}

# emotion_recipe [FAIRSEQ-TRAIN ARGS...]: a labelled corpus from its release to the table:
#   1. the manifest: python -m memobert_plugin.prepare.corpora $RECIPE "${MANIFEST_ARGS[@]}" (set by the recipe)
#   2. text, speech (wav2vec 2.0) and face (FER DenseNet) features (memobert-prepare)
#   3. cross_validate $RECIPE with the arguments given
emotion_recipe() {
    echo "== 1/3 manifest from ${MANIFEST_ARGS[*]} -> $OUT/manifest"
    python -m memobert_plugin.prepare.corpora "$RECIPE" "${MANIFEST_ARGS[@]}" --out "$OUT/manifest"
    echo "== 2/3 features -> $OUT/data"
    prepare_split all "$OUT/manifest/manifest.tsv"
    echo "== 3/3 evaluation -> $OUT/cv"
    cross_validate "$RECIPE" "$@"
}

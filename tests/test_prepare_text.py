"""Text preparation: WordPiece against transformers' BertTokenizer, sentencepiece, fairseq binarization."""

import glob
import json
import os
import shutil

import sentencepiece
from fairseq.data import data_utils

from conftest import BIN, PLUGIN_DIR, run_cli
from memobert_plugin.data.vocabulary import SENTENCEPIECE_WORD_START, BertVocabulary
from memobert_plugin.prepare.stages.text import Tokenizer
from memobert_plugin.data.wordpiece import WordPieceTokenizer
from prepare_material import pocketsphinx, prepare_here, speech_utterances, write_manifest  # noqa: F401

_COPYRIGHT = "/usr/share/doc/pocketsphinx-testdata/copyright"


def _real_lines(root):
    """Every line of the package's transcripts, recognition hypotheses, grammars and dictionaries."""
    paths = [os.path.join(root, p) for p in (
        "librivox/transcription", "librivox/test-lm.match", "cards/cards.transcription", "cards/cards.hyp",
        "tidigits/tidigits.lsn", "goforward.kws", "turtle.dic",
    )] + sorted(glob.glob(os.path.join(root, "**", "*.gram"), recursive=True))
    paths += [_COPYRIGHT] if os.path.isfile(_COPYRIGHT) else []  # prose with capitals and punctuation
    lines = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            lines += [line.strip() for line in handle if line.strip()]
    # the spoken sentences also as written text: capitalised, with punctuation
    lines += [f"\u201c{u['text'].capitalize()},\u201d she said\u2014didn't she?" for u in speech_utterances(root)]
    return lines


def test_wordpiece_matches_transformers_bert_tokenizer(pocketsphinx, minilm_dir):  # noqa: F811
    from transformers import BertTokenizer

    vocab = os.path.join(minilm_dir, "vocab.txt")
    reference = BertTokenizer(vocab, do_lower_case=True)
    ours = WordPieceTokenizer.from_file(vocab)
    lines = _real_lines(pocketsphinx)
    ours_pieces = [ours.tokenize(line) for line in lines]
    assert ours_pieces == [reference.tokenize(line) for line in lines]
    pieces = [p for line in ours_pieces for p in line]
    assert len(lines) > 100 and any(p.startswith("##") for p in pieces) and {"<", ">", "|", ";", "\u201c"} <= set(pieces)


def test_sentencepiece_vocabulary_marks_words_and_specials(pocketsphinx, tmp_path):  # noqa: F811
    utterances = speech_utterances(pocketsphinx)
    manifest = write_manifest(str(tmp_path / "m.tsv"), [{"id": u["id"], "text": u["text"]} for u in utterances])
    out = tmp_path / "data"
    assert prepare_here("all", "--manifest", manifest, "--out", out, "--tokenizer", "sentencepiece",
                        "--spm-vocab-size", 120) == ""
    model = sentencepiece.SentencePieceProcessor(model_file=str(out / "sentencepiece.model"))
    vocab = BertVocabulary.load(str(out / "dict.txt"))
    assert vocab.symbols[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert [model.is_control(i) for i in range(5)] == [True, False, True, True, True] and model.is_unknown(1)
    assert (vocab.pad(), vocab.unk(), vocab.bos(), vocab.eos(), vocab.mask_index) == (0, 1, 2, 3, 4)
    starts = vocab.word_start_flags()
    text = data_utils.load_indexed_dataset(str(out / "train"), vocab)
    for i, utterance in enumerate(utterances):
        ids = text[i].tolist()
        # ids are sentencepiece's own ids, then [SEP]; each word begins with exactly one ▁ piece
        assert ids == model.encode(utterance["text"]) + [vocab.eos()]
        assert int(starts[ids[:-1]].sum()) == len(utterance["text"].split())
    assert all(s.startswith(SENTENCEPIECE_WORD_START) == starts[i] for i, s in enumerate(vocab.symbols[5:], 5))


def test_binarized_text_is_what_fairseq_preprocess_writes(pocketsphinx, minilm_dir, tmp_path):  # noqa: F811
    utterances = speech_utterances(pocketsphinx)
    rows = [{"id": u["id"], "text": u["text"].upper() + "!"} for u in utterances]
    rows.append({"id": "accents", "text": "Café déjà vu — naïve résumé"})
    manifest = write_manifest(str(tmp_path / "m.tsv"), rows)
    out = tmp_path / "data"
    assert prepare_here("all", "--manifest", manifest, "--out", out, "--vocab", os.path.join(minilm_dir, "vocab.txt"),
                        "--shard-size", 4) == ""
    tokens = tmp_path / "pieces.txt"
    tokenizer = Tokenizer("wordpiece", os.path.join(minilm_dir, "vocab.txt"))
    tokens.write_text("".join(" ".join(tokenizer.tokenize(r["text"])) + "\n" for r in rows), encoding="utf-8")
    preprocess = shutil.which("fairseq-preprocess", path=BIN) or "fairseq-preprocess"
    run_cli([preprocess, "--user-dir", PLUGIN_DIR, "--task", "memobert_pretrain", "--only-source",
             "--srcdict", out / "dict.txt", "--trainpref", tokens, "--destdir", tmp_path / "ref",
             "--dataset-impl", "mmap", "--workers", "1"])
    for ext in ("bin", "idx"):
        assert (out / f"train.{ext}").read_bytes() == (tmp_path / "ref" / f"train.{ext}").read_bytes()
    assert (out / "dict.txt").read_bytes() == (tmp_path / "ref" / "dict.txt").read_bytes()
    assert json.loads((out / "dataset.json").read_text())["splits"]["train"]["unknown_tokens"] == 0

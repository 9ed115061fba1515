"""Issue 8, bad inputs that training must handle in-process: empty and over-long text train,
a meta file that is not UTF-8 is named with its line."""

import glob
import os

import numpy as np
import pytest
import torch

from memobert_plugin.criterions.memobert_pretrain import MemobertPretrainCriterion, MemobertPretrainCriterionConfig
from memobert_plugin.data.utterance_meta import read_meta
from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.models.memobert import MemobertConfig, MemobertModel
from memobert_plugin.prepare.binarize import TextBinarizer
from memobert_plugin.tasks.memobert_emotion import MemobertEmotionConfig, MemobertEmotionTask
from memobert_plugin.tasks.memobert_pretrain import MemobertPretrainTask, pretrain_config

LONG = 100  # word pieces, over the default 30-token text limit


@pytest.fixture
def edge_text_data(demo_corpus, tmp_path):
    """The demo's pretraining train split with its text replaced: even utterances empty, odd ones LONG pieces."""
    for path in glob.glob(os.path.join(demo_corpus.pretrain_data, "train.*.*")) + [
            os.path.join(demo_corpus.pretrain_data, "dict.txt")]:
        os.symlink(path, tmp_path / os.path.basename(path))
    vocab = BertVocabulary.load(str(tmp_path / "dict.txt"))
    words = ["i", "am", "so", "glad", "about", "the", "party"]
    text = TextBinarizer(vocab, str(tmp_path / "train"))
    for i in range(160):
        text.add([] if i % 2 == 0 else [words[k % len(words)] for k in range(LONG)])
    text.close()
    return str(tmp_path)


def test_empty_and_over_long_text_train(edge_text_data):
    task = MemobertPretrainTask.setup_task(
        pretrain_config()(data=edge_text_data, seed=1, train_subset="train", objective_mode="sum"))
    task.load_dataset("train")
    dataset = task.dataset("train")
    corpus = task.load_multimodal("train")
    vocab = task.vocab
    assert corpus[0]["text"].tolist() == [vocab.bos(), vocab.eos()]  # empty: [CLS] [SEP]
    long = corpus[1]["text"].tolist()
    assert len(long) == 30 and long[0] == vocab.bos() and long[-1] == vocab.eos()  # truncated to the limit
    assert [vocab[t] for t in long[1:4]] == ["i", "am", "so"]
    # fairseq's size filter keeps every utterance (it raises on any over max_positions)
    assert len(task.filter_indices_by_size(dataset.ordered_indices(), dataset, task.max_positions())) == 160

    torch.manual_seed(0)
    model = MemobertModel(MemobertConfig(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64,
                                         encoder_attention_heads=2, visual_feature_dim=342, acoustic_feature_dim=768),
                          len(vocab), vocab.pad())
    task.add_heads(model)
    criterion = MemobertPretrainCriterion(MemobertPretrainCriterionConfig(), task)
    for ids in ([0, 2, 4, 6], [0, 1, 2, 3]):  # only empty texts (nothing for wwmlm to mask), then a mix
        batch = dataset.collater([dataset[i] for i in ids])
        loss, _, log = criterion(model, batch)
        model.zero_grad()
        loss.backward()
        assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        assert ("wwmlm" in batch["objectives"]) == (1 in ids) and log["span_mafr_count"] > 0


def test_empty_utterance_keeps_the_whole_prompt(demo_corpus):
    task = MemobertEmotionTask.setup_task(MemobertEmotionConfig(data=demo_corpus.emotion_data, seed=1, emotion_head="prompt"))
    tokens = task.text_format().build(np.zeros(0, dtype=np.int64))
    assert [task.vocab[t] for t in tokens] == ["[CLS]", "i", "am", "[MASK]", ".", "[SEP]"]


def test_meta_not_utf8_is_named_with_its_line(tmp_path):
    path = tmp_path / "all.meta.tsv"
    path.write_bytes("id\tspeaker\tsession\tlabel\nu1\ts1\tS\thappy\nu2\tRen\u00e9\tS\tsad\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"all.meta.tsv:3: not UTF-8 text \(invalid continuation byte\); save it as UTF-8"):
        read_meta(str(path))
    # the same file as UTF-8 with a byte-order mark (as spreadsheets save it) reads
    path.write_bytes("\ufeffid\tspeaker\tsession\tlabel\nu1\ts1\tS\thappy\nu2\tRen\u00e9\tS\tsad\n".encode("utf-8"))
    assert [row.speaker for row in read_meta(str(path))] == ["s1", "Ren\u00e9"]

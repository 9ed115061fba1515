"""memobert_emotion: prompt construction, restricted prediction, labels, fold subsets."""

import pytest
import torch

from memobert_plugin.models.emotion_heads import PromptVerbalizer
from memobert_plugin.models.memobert import MemobertConfig, MemobertModel
from memobert_plugin.tasks.memobert_emotion import MemobertEmotionConfig, MemobertEmotionTask


def _task(data, **overrides):
    return MemobertEmotionTask.setup_task(MemobertEmotionConfig(data=data, seed=1, **overrides))


def _words(task, tokens):
    return [task.vocab[t] for t in tokens]


def test_prompt_appended_after_utterance(demo_corpus):
    task = _task(demo_corpus.emotion_data, emotion_head="prompt")
    task.load_dataset("test")
    item = task.dataset("test")[0]
    words = _words(task, item["text"])
    assert words[0] == "[CLS]" and words[-5:] == ["i", "am", "[MASK]", ".", "[SEP]"]
    assert words.count("[MASK]") == 1


def test_long_utterance_truncated_before_the_template(demo_corpus):
    task = _task(demo_corpus.emotion_data, emotion_head="prompt", text_max_tokens=9)
    task.load_dataset("train")
    dataset = task.dataset("train")
    for row in range(20):
        words = _words(task, dataset[row]["text"])
        assert len(words) <= 9 and words[-5:] == ["i", "am", "[MASK]", ".", "[SEP]"]
    with pytest.raises(ValueError, match="cannot hold the template"):
        _task(demo_corpus.emotion_data, emotion_head="prompt", text_max_tokens=5).load_dataset("train")


def test_multi_piece_label_word_gets_one_slot_per_piece(demo_corpus):
    task = _task(demo_corpus.emotion_data, emotion_head="prompt", prompt_label_words="mad,glad,fine,unhappy")
    assert task.readout.prompt_slots == 2  # un ##happy
    task.load_dataset("valid")
    words = _words(task, task.dataset("valid")[0]["text"])
    assert words[-6:] == ["i", "am", "[MASK]", "[MASK]", ".", "[SEP]"]
    with pytest.raises(ValueError, match="label word 'zzzz' is not in the vocabulary"):
        _task(demo_corpus.emotion_data, emotion_head="prompt", prompt_label_words="mad,glad,fine,zzzz")


def test_prediction_restricted_to_label_words():
    torch.manual_seed(0)
    cfg = MemobertConfig(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
                         visual_feature_dim=3, acoustic_feature_dim=3)
    model = MemobertModel(cfg, 20, 0).eval()
    with torch.no_grad():
        model.lm_head.bias[7] = 100.0  # a non-label word that would win an argmax over the vocabulary
    label_ids = [[3], [4], [5], [9, 10]]
    verbalizer = PromptVerbalizer(label_ids, mask_idx=2)
    tokens = torch.tensor([[1, 11, 12, 2, 2, 13], [1, 14, 2, 2, 13, 0]])
    with torch.no_grad():
        out = model(tokens)
        scores = verbalizer(out, tokens, model)
        log_probs = torch.log_softmax(model.lm_head(out.layout.modality_states(out.hidden, "text")[tokens == 2]), -1).view(2, 2, -1)
    assert scores.shape == (2, 4)
    assert model.lm_head(out.hidden[:, 3]).argmax(-1).tolist() == [7, 7]
    expected = torch.stack([log_probs[:, 0, 3], log_probs[:, 0, 4], log_probs[:, 0, 5], (log_probs[:, 0, 9] + log_probs[:, 1, 10]) / 2], 1)
    torch.testing.assert_close(scores, expected)


def test_unknown_label_is_reported(demo_corpus, tmp_path):
    import shutil

    data = tmp_path / "emotion"
    shutil.copytree(demo_corpus.emotion_data, data)
    lines = (data / "all.meta.tsv").read_text().splitlines()
    lines[3] = lines[3].rsplit("\t", 1)[0] + "\tfrustrated"
    (data / "all.meta.tsv").write_text("\n".join(lines) + "\n")
    (data / "dataset.json").unlink()  # its checksums would refuse the edited meta file first
    with pytest.raises(ValueError, match=r"all.meta.tsv:4: utterance '\w+' has label 'frustrated'"):
        _task(str(data)).load_dataset("train")


def test_fold_subsets_and_fraction(demo_corpus):
    task = _task(demo_corpus.emotion_data, fold=3, train_fraction=0.5)
    for split in ("train", "valid", "test"):
        task.load_dataset(split)
    rows = {s: [task.dataset(s)[i]["id"] for i in range(len(task.dataset(s)))] for s in ("train", "valid", "test")}
    speakers = {s: {task.meta[row].speaker for row in rows[s]} for s in rows}
    assert speakers["test"] == {"Ses02F"} and speakers["valid"] == {"Ses02M"}
    assert "Ses02F" not in speakers["train"] and "Ses02M" not in speakers["train"]
    assert abs(len(task.datasets["train"]) - 0.5 * len(task.fold.train)) <= 4
    batch = task.datasets["test"].collater([task.datasets["test"][i] for i in range(4)])
    assert batch["target"].tolist() == [task.labels[i] for i in batch["id"].tolist()]


def test_every_utterance_is_batched(demo_corpus):
    """fairseq 0.12 drops a last batch that is not a multiple of --required-batch-size-multiple."""
    for fraction in (0.37, 0.4, 0.45):  # the first that leaves a partial last batch in the world's train split
        task = _task(demo_corpus.emotion_data, train_fraction=fraction)
        task.load_dataset("train")
        if len(task.dataset("train")) % 8:
            break
    for split in ("train", "test"):
        task.load_dataset(split)
        dataset = task.dataset(split)
        itr = task.get_batch_iterator(dataset, max_sentences=16, required_batch_size_multiple=8, seed=1)
        seen = sorted(i for batch in itr.next_epoch_itr(shuffle=True) for i in batch["id"].tolist())
        assert seen == sorted(dataset[i]["id"] for i in range(len(dataset)))
    assert len(task.dataset("train")) % 8 != 0


def test_text_cannot_inject_a_mask_slot_and_sentencepiece_is_refused(demo_corpus):
    from types import SimpleNamespace

    from memobert_plugin.data.vocabulary import BertVocabulary
    from memobert_plugin.tasks.emotion_readout import EmotionReadout

    task = _task(demo_corpus.emotion_data, emotion_head="prompt")
    ids = task.readout.encode("i was [MASK] today")
    assert task.vocab.mask_index not in ids and len(ids) > 4  # "[", "mask", "]" as at preparation
    cfg = SimpleNamespace(emotion_labels="sad,glad", emotion_head="prompt", prompt_template="{utterance} i am [MASK] .",
                          prompt_label_words="", text_max_tokens=30)
    spm = BertVocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\u2581i", "\u2581am", "\u2581sad", "\u2581glad", "."])
    with pytest.raises(ValueError, match="sentencepiece vocabulary"):
        EmotionReadout(cfg, spm)
    with pytest.raises(ValueError, match="has words outside the vocabulary"):
        _task(demo_corpus.emotion_data, emotion_head="prompt", prompt_template="{utterance} i am zzqx [MASK] .")

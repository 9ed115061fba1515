"""The model: shapes with absent modalities, packing equivalence, BERT parity and initialisation reports."""

import os
from unittest import mock

import numpy as np
import pytest
import torch

from memobert_plugin.data.vocabulary import BertVocabulary
from memobert_plugin.models.memobert import MemobertConfig, MemobertModel
from memobert_plugin.models.pretrained import bert_shape, load_bert_weights

VOCAB = 50
PAD = 0


def _model(**overrides):
    cfg = MemobertConfig(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
                         visual_feature_dim=6, acoustic_feature_dim=5, **overrides)
    torch.manual_seed(0)
    return MemobertModel(cfg, VOCAB, PAD).eval()


def _sample(rng, text_len, vis_len, ac_len):
    return (torch.tensor(rng.integers(1, VOCAB, text_len)), torch.tensor(rng.standard_normal((vis_len, 6)), dtype=torch.float32),
            torch.tensor(rng.standard_normal((ac_len, 5)), dtype=torch.float32))


def _batch(samples):
    def pad(seqs):
        width = max(len(s) for s in seqs)
        out = torch.zeros((len(seqs), width) + seqs[0].shape[1:], dtype=seqs[0].dtype)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        return out

    text, vis, ac = zip(*samples)
    return dict(src_tokens=pad(text), frames={"visual": pad(vis), "acoustic": pad(ac)},
                frame_lengths={"visual": torch.tensor([len(v) for v in vis]), "acoustic": torch.tensor([len(a) for a in ac])})


def test_packing_matches_each_sample_alone():
    """A sample's states in a padded batch equal its states encoded alone: padding never leaks."""
    rng = np.random.default_rng(0)
    samples = [_sample(rng, 7, 4, 9), _sample(rng, 3, 0, 5), _sample(rng, 5, 6, 0), _sample(rng, 2, 0, 0)]
    model = _model()
    with torch.no_grad():
        batch_out = model(**_batch(samples))
        for row, sample in enumerate(samples):
            alone = model(**_batch([sample]))
            for modality, length in zip(("text", "visual", "acoustic"), map(len, sample)):
                if length == 0:
                    continue
                expected = alone.layout.modality_states(alone.hidden, modality)[0, :length]
                got = batch_out.layout.modality_states(batch_out.hidden, modality)[row, :length]
                torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    lengths = [sum(map(len, s)) for s in samples]
    assert batch_out.hidden.shape == (4, max(lengths), 32)
    assert batch_out.padding_mask.sum(1).tolist() == [max(lengths) - n for n in lengths]


def test_absent_modalities_whole_batch():
    rng = np.random.default_rng(1)
    model = _model()
    text = torch.tensor(rng.integers(1, VOCAB, (3, 6)))
    out = model(text)  # no frames at all
    assert out.hidden.shape == (3, 6, 32) and set(out.layout.spans) == {"text"}
    out = model(text, frames={"visual": torch.zeros(3, 0, 6)}, frame_lengths={"visual": torch.zeros(3, dtype=torch.long)})
    assert out.hidden.shape == (3, 6, 32)


def test_masked_frames_hide_their_content():
    rng = np.random.default_rng(2)
    model = _model()
    batch = _batch([_sample(rng, 4, 5, 3)])
    mask = torch.tensor([[False, True, True, True, False]])
    with torch.no_grad():
        a = model(**batch, frame_masks={"visual": mask}).hidden
        batch["frames"]["visual"][0, 1:4] += 100.0  # change only masked frames
        b = model(**batch, frame_masks={"visual": mask}).hidden
    torch.testing.assert_close(a, b)


def test_masked_frames_receive_the_learned_mask_vector():
    """What a masked frame becomes before positions and type are added is the embedder's mask vector."""
    rng = np.random.default_rng(3)
    embedder = _model().frames["visual"]
    frames = torch.tensor(rng.standard_normal((2, 5, 6)), dtype=torch.float32)
    mask = torch.tensor([[False, True, False, True, True], [True, False, False, False, False]])
    with torch.no_grad():
        embedder.mask_embedding.copy_(torch.linspace(-1.0, 1.0, 32))
        got = embedder(frames, mask)
        expected = embedder.finish(torch.where(mask[..., None], embedder.mask_embedding, embedder.projection(frames)))
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got[mask], embedder.finish(embedder.projection(frames))[mask])


def test_checkpoint_saved_before_the_stream_registry_gives_the_same_outputs():
    """A checkpoint saved with embedders named ``visual``/``acoustic`` loads through fairseq (its names
    upgraded) and gives the outputs recorded when it was saved (tests/fixtures/pre_stream_registry)."""
    from fairseq import checkpoint_utils

    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "pre_stream_registry")
    old_names = torch.load(os.path.join(fixture, "checkpoint.pt"), weights_only=False)["model"]
    assert "visual.projection.weight" in old_names and "frames.visual.projection.weight" not in old_names
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [os.path.join(fixture, "checkpoint.pt")], arg_overrides={"data": fixture})
    model = models[0].eval()
    recorded = torch.load(os.path.join(fixture, "expected_outputs.pt"))
    old = recorded["net_input"]
    streams = ("visual", "acoustic")
    with torch.no_grad():
        out = model(old["src_tokens"], frames={s: old[s] for s in streams},
                    frame_lengths={s: old[f"{s}_lengths"] for s in streams},
                    frame_masks={s: old[f"{s}_mask"] for s in streams})
        states = {m: out.layout.modality_states(out.hidden, m) for m in ("text", *streams)}
        got = {"hidden": out.hidden, "padding_mask": out.padding_mask, "lm_logits": model.lm_head(states["text"]),
               "head_span_mvfr": model.heads["span_mvfr"](states["visual"]),
               "head_span_mvfc_kl": model.heads["span_mvfc_kl"](states["visual"]),
               "head_span_mafr": model.heads["span_mafr"](states["acoustic"])}
    assert set(got) == set(recorded["expected"])
    for name, value in recorded["expected"].items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=1e-6, msg=name)


def test_frame_dim_mismatch_is_reported():
    model = _model()
    with pytest.raises(ValueError, match="expects 6-d features, got 7-d"):
        model(torch.ones(1, 3, dtype=torch.long), frames={"visual": torch.zeros(1, 2, 7)},
              frame_lengths={"visual": torch.tensor([2])})


def test_bert_parity_and_init_report(minilm_dir):
    """Text-only hidden states equal transformers' BertModel on the real MiniLM checkpoint."""
    from transformers import BertModel, BertTokenizer

    vocab = BertVocabulary.load(f"{minilm_dir}/vocab.txt")
    cfg = MemobertConfig(visual_feature_dim=342, acoustic_feature_dim=768, **bert_shape(minilm_dir))
    model = MemobertModel(cfg, len(vocab), vocab.pad()).eval()
    report = load_bert_weights(model, minilm_dir, vocab.symbols)
    assert "encoder.layers.5.attention.qkv.weight" in report.loaded and "text.tokens.weight" in report.loaded
    assert "lm_head.dense.weight" in report.fresh  # a BertModel checkpoint has no MLM head
    assert "frames.visual.projection.weight" in report.fresh and "frames.acoustic.type_embedding" in report.fresh
    assert report.unused == []
    reference = BertModel.from_pretrained(minilm_dir).eval()
    enc = BertTokenizer(f"{minilm_dir}/vocab.txt")(
        ["I am so happy to see you!", "the weather was gloomy and I felt miserable about the exam ."],
        padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = reference(**enc).last_hidden_state
        out = model(enc["input_ids"])
        got = out.layout.modality_states(out.hidden, "text")
    real = enc["attention_mask"].bool()
    assert (expected[real] - got[real]).abs().max().item() <= 1e-4


def test_bert_init_checks_vocab_and_shape(minilm_dir):
    vocab = BertVocabulary.load(f"{minilm_dir}/vocab.txt")
    cfg = MemobertConfig(visual_feature_dim=8, acoustic_feature_dim=8, **bert_shape(minilm_dir))
    model = MemobertModel(cfg, len(vocab), vocab.pad())
    symbols = list(vocab.symbols)
    symbols[2000], symbols[2001] = symbols[2001], symbols[2000]
    with pytest.raises(ValueError, match="differs from its vocab.txt at id 2000"):
        load_bert_weights(model, minilm_dir, symbols)
    small = MemobertModel(MemobertConfig(encoder_layers=2, visual_feature_dim=8, acoustic_feature_dim=8), len(vocab), 0)
    with pytest.raises(ValueError, match="num_hidden_layers=6 but the model has encoder_layers=2"):
        load_bert_weights(small, minilm_dir)


def test_attention_takes_a_mask_only_when_the_batch_is_padded(monkeypatch):
    """Without padding no mask is built, so attention kernels that take none (flash) apply."""
    masks = []
    attention = torch.nn.functional.scaled_dot_product_attention

    def recording(*args, attn_mask=None, **kwargs):
        masks.append(attn_mask)
        return attention(*args, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    rng = np.random.default_rng(0)
    model = _model()
    with torch.no_grad():
        model(**_batch([_sample(rng, 4, 3, 5), _sample(rng, 6, 2, 4)]))  # 12 positions each
        assert len(masks) == 2 and all(mask is None for mask in masks)
        model(**_batch([_sample(rng, 4, 3, 5), _sample(rng, 6, 2, 3)]))  # 12 and 11
    assert len(masks) == 4 and all(mask is not None and mask.shape == (2, 1, 1, 12) for mask in masks[2:])


@pytest.mark.parametrize("padded", [False, True])
def test_cpu_training_attention_is_softmax_attention_with_its_dropout_draw(padded):
    """The CPU training path (fewer passes than torch's reference kernel) is softmax attention whose
    weights go through memobert's dropout, drawn from the same seed."""
    from memobert_plugin.models.dropout import keep_mask
    from memobert_plugin.models.encoder import SelfAttention

    torch.manual_seed(0)
    attention = SelfAttention(16, 4, dropout=0.5).train()
    x = torch.randn(3, 7, 16)
    mask = None
    if padded:
        mask = torch.ones(3, 1, 1, 7, dtype=torch.bool)
        mask[0, ..., 5:] = False
    torch.manual_seed(1)
    ours = attention(x, mask)
    q, k, v = attention.qkv(x).view(3, 7, 3, 4, 4).permute(2, 0, 3, 1, 4).unbind(0)
    scores = q @ k.transpose(-1, -2) / 2.0  # head dim 4
    if padded:
        scores = scores.masked_fill(~mask, float("-inf"))
    torch.manual_seed(1)
    weights = scores.softmax(-1).view(12, 7, 7) * keep_mask(torch.Size([12, 7, 7]), 0.5) * 2.0
    reference = (weights.view(3, 4, 7, 7) @ v).transpose(1, 2).reshape(3, 7, 16)
    torch.testing.assert_close(ours, attention.out(reference), rtol=1e-5, atol=1e-6)


def _tied_head_step(head, tokens, hidden):
    """The embedding lookup of ``tokens``, then the MLM head on ``hidden``, as in the model: the head's
    gradient reaches the tied weight first."""
    head.zero_grad(set_to_none=True)
    lookup = head.word_embeddings(tokens)
    (head(hidden).logsumexp(-1).sum() + lookup.square().sum()).backward()
    return {name: p.grad.clone() for name, p in head.named_parameters()}


def test_the_tied_output_layer_has_f_linears_gradients_and_adds_the_lookups_in_place():
    from torch.profiler import profile

    from memobert_plugin.models.heads import MaskedLMHead

    torch.manual_seed(0)
    head = MaskedLMHead(16, torch.nn.Embedding(50, 16))
    tokens, hidden = torch.randint(0, 50, (3, 5)), torch.randn(7, 16, requires_grad=True)
    with profile(record_shapes=True) as prof:
        ours = _tied_head_step(head, tokens, hidden)
    ours["hidden"] = hidden.grad
    # only the embedding gradient is [50, 16]: summing its two parts out of place would make an aten::add of that shape
    adds = [e.input_shapes for e in prof.events() if e.name == "aten::add" and e.input_shapes[:1] == [[50, 16]]]
    assert adds == []
    hidden.grad = None
    with mock.patch("memobert_plugin.models.heads._TiedOutputProjection.apply", torch.nn.functional.linear):
        reference = _tied_head_step(head, tokens, hidden)
    reference["hidden"] = hidden.grad
    for name, grad in reference.items():
        torch.testing.assert_close(ours[name], grad, msg=name)


def test_the_tied_output_layer_under_autocast_computes_its_gradients_in_the_forwards_dtype():
    from memobert_plugin.models.heads import MaskedLMHead

    torch.manual_seed(0)
    head = MaskedLMHead(16, torch.nn.Embedding(50, 16))
    tokens, hidden = torch.randint(0, 50, (3, 5)), torch.randn(7, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _tied_head_step(head, tokens, hidden)
        with mock.patch("memobert_plugin.models.heads._TiedOutputProjection.apply", torch.nn.functional.linear):
            reference = _tied_head_step(head, tokens, hidden)
    for name, grad in reference.items():
        assert ours[name].dtype == torch.float32
        torch.testing.assert_close(ours[name], grad, rtol=2e-2, atol=2e-2, msg=name)

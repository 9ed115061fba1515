"""memobert_pretrain's datasets: truncation, conditional masking, determinism, objective mix."""

import collections

import pytest
import torch

from memobert_plugin.tasks.memobert_pretrain import MemobertPretrainTask, pretrain_config


def _task(data, **overrides):
    cfg = pretrain_config()(data=data, seed=3, train_subset="train", **overrides)
    return MemobertPretrainTask.setup_task(cfg)


@pytest.fixture(scope="module")
def task(demo_corpus):
    task = _task(demo_corpus.pretrain_data)
    task.load_dataset("train")
    task.load_dataset("valid")
    return task


def test_limits_truncate_never_drop(task, demo_corpus):
    corpus = task.load_multimodal("train")
    assert len(corpus) == 160  # every utterance of the split is there
    assert corpus.frame_lengths["visual"].max() == 36 and corpus.frame_lengths["acoustic"].max() == 64
    longest = max(range(len(corpus)), key=lambda i: corpus.sizes[i])
    item = corpus[longest]
    assert len(item["text"]) <= 30 and len(item["visual"]) <= 36 and len(item["acoustic"]) <= 64
    assert item["text"][0] == task.vocab.bos() and item["text"][-1] == task.vocab.eos()
    assert corpus.sizes[longest] == len(item["text"]) + len(item["visual"]) + len(item["acoustic"])


def _collate(task, ids, split="train"):
    ds = task.dataset(split)
    return ds.collater([ds[i] for i in ids])


def _drawn(task, samples, epoch: int) -> set:
    """The objectives a training batch of ``samples`` is masked for at ``epoch``."""
    ds = task.dataset("train")
    ds.set_epoch(epoch)
    return set(ds.collater(samples)["objectives"])


def test_conditional_masking_touches_one_modality(task):
    sum_task = _task(task.cfg.data, objective_mode="sum")
    sum_task.load_dataset("train")
    batch = _collate(sum_task, range(16))
    assert set(batch["objectives"]) == {"wwmlm", "span_mvfr", "span_mvfc_kl", "span_mafr"}
    base = batch["net_input"]
    expected = {"wwmlm": "text", "span_mvfr": "visual", "span_mvfc_kl": "visual", "span_mafr": "acoustic"}
    for name, masked in batch["objectives"].items():
        assert masked["stream"] == expected[name] and (masked["tokens"] is None) == (name != "wwmlm")
        assert masked["weight"] == pytest.approx(sum_task.cfg.objective_ratios[list(expected).index(name)])
    # masks stay inside the real frames and real words
    for name, stream in (("span_mvfr", "visual"), ("span_mafr", "acoustic")):
        mask = batch["objectives"][name]["positions"]
        valid = torch.arange(mask.shape[1])[None] < base["frame_lengths"][stream][:, None]
        assert mask.any() and not (mask & ~valid).any()
        assert torch.equal(batch["objectives"][name]["targets"], base["frames"][stream][mask])
    mlm = batch["objectives"]["wwmlm"]
    special = torch.tensor(task.vocab.special_ids())
    assert not torch.isin(base["src_tokens"][mlm["positions"]], special).any()
    unchanged = ~mlm["positions"]
    assert torch.equal(mlm["tokens"][unchanged], base["src_tokens"][unchanged])
    assert torch.equal(mlm["targets"], base["src_tokens"][mlm["positions"]])
    kl = batch["objectives"]["span_mvfc_kl"]
    assert torch.equal(kl["targets"], batch["frame_targets"]["visual_fer"][kl["positions"]])
    torch.testing.assert_close(kl["targets"].sum(-1), torch.ones(len(kl["targets"])), atol=2e-2, rtol=0)


def test_masks_reproducible_per_epoch(task):
    ds = task.dataset("train")
    ds.set_epoch(1)
    a, b = _collate(task, range(8)), _collate(task, range(8))
    ds.set_epoch(2)
    c = _collate(task, range(8))
    ds.set_epoch(1)
    name = next(iter(a["objectives"]))
    assert torch.equal(a["objectives"][name]["positions"], b["objectives"][name]["positions"])
    differs = set(c["objectives"]) != set(a["objectives"]) or not torch.equal(
        a["objectives"][name]["positions"], c["objectives"][name]["positions"])
    assert differs


def test_validation_scores_every_objective_the_same_way_each_epoch(task):
    ds = task.dataset("valid")
    first = _collate(task, range(8), "valid")
    ds.set_epoch(5)
    later = _collate(task, range(8), "valid")
    assert set(first["objectives"]) == {"wwmlm", "span_mvfr", "span_mvfc_kl", "span_mafr"}
    for name in first["objectives"]:
        assert torch.equal(first["objectives"][name]["positions"], later["objectives"][name]["positions"])


def test_objectives_drawn_by_ratio(task):
    ds = task.dataset("train")
    samples = [ds[i] for i in range(160)]
    usable = [s for s in samples if len(s["visual"]) and len(s["acoustic"])]
    counts = collections.Counter()
    for start in range(0, 3000):
        batch = [dict(s, id=start * 1000 + j) for j, s in enumerate(usable[start % 50 : start % 50 + 4])]
        counts.update(_drawn(task, batch, epoch=1))
    total = sum(counts.values())
    for name, ratio in zip(("wwmlm", "span_mvfr", "span_mvfc_kl", "span_mafr"), (0.4, 0.2, 0.2, 0.2)):
        assert abs(counts[name] / total - ratio) < 0.03


def test_objective_skipped_when_nothing_to_mask(task):
    ds = task.dataset("train")
    no_faces = [s for s in (ds[i] for i in range(160)) if len(s["visual"]) == 0][:3]
    assert no_faces, "the demo corpus has utterances without faces"
    drawn = set()
    for epoch in range(1, 30):
        chosen = _drawn(task, no_faces, epoch)
        assert not chosen & {"span_mvfr", "span_mvfc_kl"}
        drawn |= chosen
    assert drawn == {"wwmlm", "span_mafr"}  # the others are still drawn


def test_ablation_options(demo_corpus):
    task = _task(demo_corpus.pretrain_data, mlm_masking_unit="token", frame_mask_span=1,
                 objectives="wwmlm,span_mafr", objective_ratios=[1.0, 0.0])
    task.load_dataset("train")
    for start in range(0, 40, 8):
        batch = _collate(task, range(start, start + 8))
        assert set(batch["objectives"]) == {"wwmlm"}
    assert list(task.objectives) == ["wwmlm", "span_mafr"]
    with pytest.raises(ValueError, match="unknown objectives \\['nope'\\]"):
        _task(demo_corpus.pretrain_data, objectives="wwmlm,nope", objective_ratios=[1.0, 1.0])
    with pytest.raises(ValueError, match="lists 2 objectives but --objective-ratios 1"):
        _task(demo_corpus.pretrain_data, objectives="wwmlm,span_mafr", objective_ratios=[1.0])


@pytest.mark.parametrize("option, value", [("mlm_mask_prob", 1.5), ("visual_mask_prob", -0.1),
                                           ("acoustic_mask_prob", float("nan")), ("mlm_random_token_prob", 2.0)])
def test_masking_probabilities_are_checked(demo_corpus, option, value):
    with pytest.raises(ValueError, match=rf"--{option.replace('_', '-')} {value}: a probability must be within \[0, 1\]"):
        _task(demo_corpus.pretrain_data, **{option: value})
    with pytest.raises(ValueError, match="--mlm-leave-unmasked-prob 0.6 and --mlm-random-token-prob 0.5: together more"):
        _task(demo_corpus.pretrain_data, mlm_leave_unmasked_prob=0.6, mlm_random_token_prob=0.5)


def test_max_tokens_counts_every_modality(task):
    """Batches by --max-tokens: packed batch size (all modalities) stays within the budget."""
    from memobert_plugin.models.memobert import MemobertConfig, MemobertModel

    cfg = MemobertConfig(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
                         visual_feature_dim=task.stream_dims["visual"], acoustic_feature_dim=task.stream_dims["acoustic"])
    model = MemobertModel(cfg, len(task.vocab), task.vocab.pad()).eval()
    itr = task.get_batch_iterator(task.dataset("train"), max_tokens=600, seed=1).next_epoch_itr(shuffle=False)
    seen = 0
    for batch in itr:
        with torch.no_grad():
            out = model(**batch["net_input"])
        assert out.hidden.shape[0] * out.hidden.shape[1] <= 600
        assert batch["ntokens"] == int((~out.padding_mask).sum())
        seen += batch["nsentences"]
    assert seen == 160


def _without(src, dst, streams):
    import shutil

    shutil.copytree(src, dst)
    for path in dst.iterdir():
        if any(path.name.endswith(f".{s}.npy") or path.name.endswith(f".{s}.len") for s in streams):
            path.unlink()
    (dst / "dataset.json").unlink(missing_ok=True)  # its checksums list the removed streams
    return str(dst)


def test_missing_fer_labels_are_an_error_not_a_crash(demo_corpus, tmp_path):
    data = _without(demo_corpus.pretrain_data, tmp_path / "nofer", ["visual_fer"])
    with pytest.raises(ValueError, match=r"objective span_mvfc_kl needs the visual_fer stream"):
        _task(data)
    task = _task(data, objective_ratios=[0.4, 0.2, 0.0, 0.2], objective_mode="sum")
    task.load_dataset("train")
    batch = _collate(task, range(8))
    assert set(batch["objectives"]) == {"wwmlm", "span_mvfr", "span_mafr"}


def test_data_prepared_without_a_fer_model_leaves_out_its_objective(demo_corpus, tmp_path, caplog):
    """dataset.json says the faces came from a vision encoder without a FER model: span_mvfc_kl is left
    out with one warning, the other objectives keep their ratios."""
    import json
    import logging

    data = _without(demo_corpus.pretrain_data, tmp_path / "vit", ["visual_fer"])
    visual = {"extractor": "vit", "encoder": "/models/vit", "checkpoint": None}
    (tmp_path / "vit" / "dataset.json").write_text(json.dumps(
        {"splits": {split: {"extractors": {"visual": visual}} for split in ("train", "valid")}}))
    with caplog.at_level(logging.WARNING):
        task = _task(data, objective_mode="sum")
    said = [r.getMessage() for r in caplog.records if "span_mvfc_kl" in r.getMessage()]
    assert len(said) == 1 and "without the visual_fer stream (no --fer-model)" in said[0]
    assert task.objective_ratios == [0.4, 0.2, 0.0, 0.2]
    task.load_dataset("train")
    assert set(_collate(task, range(8))["objectives"]) == {"wwmlm", "span_mvfr", "span_mafr"}


def test_absent_modality_keeps_the_models_size(demo_corpus, tmp_path):
    """Data without faces: a checkpoint with any face feature size is accepted (nothing to compare)."""
    from memobert_plugin.models.memobert import MemobertConfig
    from omegaconf import OmegaConf

    data = _without(demo_corpus.pretrain_data, tmp_path / "nofaces", ["visual", "visual_fer"])
    task = _task(data, objective_ratios=[0.5, 0.0, 0.0, 0.5])
    cfg = OmegaConf.structured(MemobertConfig(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                                              encoder_attention_heads=2, visual_feature_dim=27, acoustic_feature_dim=768))
    cfg._name = "memobert"
    model = task.build_model(cfg, from_checkpoint=True)
    assert model.frames["visual"].feature_dim == 27 and task.stream_dims["visual"] == 27
    task.load_dataset("train")
    batch = _collate(task, range(4))
    assert batch["net_input"]["frames"]["visual"].shape == (4, 0, 27)
    model(**batch["net_input"])



def test_objective_metrics_are_exact_and_nan_when_not_drawn():
    """Ratios come from sums (a 2-worker split gives the same figures). Like fairseq's train loop,
    one named aggregator is reset after each log window; in a window where an objective was not
    drawn its ratios are 0/0 = nan, with ``*_nbatches`` 0 saying why."""
    import math

    from fairseq import metrics

    from memobert_plugin.criterions.memobert_pretrain import MemobertPretrainCriterion
    from memobert_plugin.objectives import OBJECTIVE_REGISTRY

    def output(loss, **sums):
        log = {"loss": loss, "sample_size": 1}
        for objective in ("wwmlm", "span_mafr", "span_mvfr", "span_mvfc_kl"):
            log.update(dict.fromkeys(OBJECTIVE_REGISTRY[objective].sum_keys(), 0))
        log.update(sums)
        return log

    batches = [output(3.0, wwmlm_loss_sum=12.0, wwmlm_count=4, wwmlm_correct=1, wwmlm_nbatches=1),
               output(1.0, span_mafr_loss_sum=6.0, span_mafr_count=5, span_mafr_nbatches=1),
               output(2.0, wwmlm_loss_sum=4.0, wwmlm_count=6, wwmlm_correct=3, wwmlm_nbatches=1)]

    def log_windows(windows):
        """Each window: its steps, each step the (worker-summed) logging outputs."""
        values = []
        with metrics.aggregate(new_root=True):
            for steps in windows:
                with metrics.aggregate("window"):
                    for step in steps:
                        MemobertPretrainCriterion.reduce_metrics(step)
                values.append(metrics.get_smoothed_values("window"))
                metrics.reset_meters("window")
        return values

    one_worker, only_mafr = log_windows([[[b] for b in batches], [[batches[1]]]])
    assert one_worker["wwmlm_loss"] == pytest.approx(16.0 / 10) and one_worker["wwmlm_acc"] == pytest.approx(0.4)
    assert one_worker["wwmlm_nbatches"] == 2 and one_worker["span_mafr_loss"] == pytest.approx(6.0 / 5)
    assert one_worker["span_mvfr_nbatches"] == 0 and math.isnan(one_worker["span_mvfr_loss"])
    assert only_mafr["span_mafr_loss"] == pytest.approx(6.0 / 5) and only_mafr["wwmlm_nbatches"] == 0
    assert math.isnan(only_mafr["wwmlm_loss"]) and math.isnan(only_mafr["wwmlm_acc"])
    # fairseq sums the workers' logging outputs key by key before reduce_metrics
    summed = {k: batches[0][k] + batches[2][k] for k in batches[0]}
    (two_workers,) = log_windows([[[summed], [batches[1]]]])
    for key in ("wwmlm_loss", "wwmlm_acc", "wwmlm_nbatches", "span_mafr_loss"):
        assert two_workers[key] == pytest.approx(one_worker[key])


def test_training_step_never_waits_for_the_device(task, monkeypatch):
    """The criterion keeps every count and sum a tensor until reduce_metrics: no ``.item()`` in the
    step, and the figures reduce_metrics derives from those tensors are the exact ratios."""
    from fairseq import metrics

    from memobert_plugin.criterions.memobert_pretrain import MemobertPretrainCriterion
    from memobert_plugin.models.memobert import MemobertConfig, MemobertModel

    sum_task = _task(task.cfg.data, objective_mode="sum")
    sum_task.load_dataset("train")
    batch = _collate(sum_task, range(16))
    cfg = MemobertConfig(encoder_layers=1, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
                         visual_feature_dim=sum_task.stream_dims["visual"],
                         acoustic_feature_dim=sum_task.stream_dims["acoustic"])
    model = MemobertModel(cfg, len(sum_task.vocab), sum_task.vocab.pad())
    sum_task.add_heads(model)
    criterion = MemobertPretrainCriterion(None, sum_task)
    calls = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: calls.append(self.shape) or item(self))
    loss, _, log = criterion(model, batch)
    loss.backward()
    assert calls == []
    assert torch.is_tensor(log["loss"]) and torch.is_tensor(log["wwmlm_correct"]) and torch.is_tensor(log["span_mvfc_kl_agree"])
    with metrics.aggregate(new_root=True) as agg:
        MemobertPretrainCriterion.reduce_metrics([log])
        values = agg.get_smoothed_values()
    assert values["wwmlm_acc"] == pytest.approx(round(log["wwmlm_correct"].tolist() / log["wwmlm_count"], 4))
    assert values["span_mafr_loss"] == pytest.approx(round(log["span_mafr_loss_sum"].tolist() / log["span_mafr_count"], 4))


def test_objectives_import_no_model_code():
    """The layer rule: objectives sit above data only; their heads come from the task and criterion."""
    import ast
    import pathlib

    import memobert_plugin.objectives as objectives

    for path in pathlib.Path(objectives.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        assert not [m for m in imported if "models" in m.split(".")], path.name

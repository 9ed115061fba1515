"""The downstream options the paper's authors chose differently: prompt loss, LR schedule, weight decay
on biases and LayerNorm, a low-resource subset per seed."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from memobert_plugin.criterions.memobert_emotion import MemobertEmotionCriterion, MemobertEmotionCriterionConfig
from memobert_plugin.evaluation.cross_validation import FoldJob
from memobert_plugin.models.emotion_heads import EMOTION_HEAD
from memobert_plugin.models.memobert import MemobertConfig
from memobert_plugin.optim.memobert_adam import MemobertAdam, MemobertAdamConfig
from memobert_plugin.tasks.memobert_emotion import MemobertEmotionConfig, MemobertEmotionTask


def _task(data, **overrides):
    return MemobertEmotionTask.setup_task(MemobertEmotionConfig(data=data, seed=1, **overrides))


def _model_and_batch(demo_corpus, head="prompt"):
    task = _task(demo_corpus.emotion_data, emotion_head=head)
    cfg = OmegaConf.structured(MemobertConfig(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
                                              encoder_attention_heads=2))
    cfg._name = "memobert"
    torch.manual_seed(0)
    model = task.build_model(cfg).eval()
    task.load_dataset("train")
    dataset = task.dataset("train")
    return task, model, dataset.collater([dataset[i] for i in range(6)])


def test_vocabulary_prompt_loss_is_the_mlm_cross_entropy_at_the_mask(demo_corpus):
    task, model, batch = _model_and_batch(demo_corpus)
    tokens, target = batch["net_input"]["src_tokens"], batch["target"]
    with torch.no_grad():
        output = model(**batch["net_input"])
        states = output.layout.modality_states(output.hidden, "text")[tokens.eq(task.vocab.mask_index)]
        vocab_logits = model.lm_head(states).float()  # one [MASK] per row: the label words are one piece
        label_ids = model.emotion_heads[EMOTION_HEAD].piece_ids[:, 0]
        losses = {}
        for kind in ("vocabulary", "label_words"):
            criterion = MemobertEmotionCriterion(MemobertEmotionCriterionConfig(prompt_loss=kind), task)
            losses[kind] = criterion(model, batch)[0]
    assert losses["vocabulary"] == pytest.approx(F.cross_entropy(vocab_logits, label_ids[target], reduction="sum").item(), rel=1e-5)
    assert losses["label_words"] == pytest.approx(F.cross_entropy(vocab_logits[:, label_ids], target, reduction="sum").item(), rel=1e-5)


def test_a_classifier_head_trains_with_cross_entropy_over_the_classes(demo_corpus):
    task, model, batch = _model_and_batch(demo_corpus, head="finetune")
    criterion = MemobertEmotionCriterion(MemobertEmotionCriterionConfig(), task)  # the default: vocabulary
    with torch.no_grad():
        logits = task.class_logits(model, batch["net_input"]).float()
        loss = criterion(model, batch)[0]
    assert loss == pytest.approx(F.cross_entropy(logits, batch["target"], reduction="sum").item(), rel=1e-5)


@pytest.mark.parametrize("decay_norm_and_bias", [False, True])
def test_weight_decay_spares_biases_and_layernorm_unless_asked(decay_norm_and_bias):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()  # no zeros: zero stays zero under decay
    before = [p.detach().clone() for p in model.parameters()]
    cfg = OmegaConf.structured(MemobertAdamConfig(lr=[0.1], tpu=False, weight_decay=0.5, decay_norm_and_bias=decay_norm_and_bias))
    optimizer = MemobertAdam(cfg, model.parameters())
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # only the decay moves parameters
    optimizer.step()
    for p, old in zip(model.parameters(), before):
        decayed = not torch.equal(p.detach(), old)
        assert decayed == (p.dim() > 1 or decay_norm_and_bias), tuple(p.shape)


def _job(demo_corpus, seed, **options):
    return FoldJob(corpus="demo", data=demo_corpus.emotion_data, setting="direct", fold=3, seed=seed, out_dir="unused",
                   arch="memobert_tiny", batch_size=16, max_epoch=3, train_fraction=0.5, **options)


def _train_rows(job):
    args = job.task_args()
    cfg = dict(data=job.data, fold=job.fold, train_fraction=job.train_fraction,
               train_fraction_seed=int(args[args.index("--train-fraction-seed") + 1]))
    task = _task(**cfg)
    task.load_dataset("train")
    dataset = task.dataset("train")
    return sorted(dataset[i]["id"] for i in range(len(dataset)))


def test_each_seed_draws_its_own_low_resource_subset(demo_corpus):
    per_seed = [_train_rows(_job(demo_corpus, seed)) for seed in (1, 2)]
    assert per_seed[0] != per_seed[1] and len(per_seed[0]) == len(per_seed[1])
    shared = [_train_rows(_job(demo_corpus, seed, same_subset_for_all_seeds=True)) for seed in (1, 2)]
    assert shared[0] == shared[1] == per_seed[0]


def test_warmup_linear_schedule_spans_the_folds_updates(demo_corpus):
    job = _job(demo_corpus, 2, lr_schedule="warmup_linear")
    command = job.train_command()
    total = math.ceil(len(_train_rows(job)) / 16) * 3
    assert command[command.index("--lr-scheduler") + 1] == "polynomial_decay"
    assert int(command[command.index("--total-num-update") + 1]) == total
    assert int(command[command.index("--warmup-updates") + 1]) == round(0.1 * total)
    constant = _job(demo_corpus, 2).train_command()
    assert constant[constant.index("--lr-scheduler") + 1] == "fixed"
    zero_shot = dataclasses.replace(job, setting="pretrain_prompt", init_path="pretrained.pt", train_fraction=0.0)
    zero_shot = zero_shot.untrained_command()  # no labels: no update to schedule
    assert zero_shot[zero_shot.index("--lr-scheduler") + 1] == "fixed"

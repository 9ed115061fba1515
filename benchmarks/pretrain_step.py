"""Training-step throughput of memobert against transformers' BertForMaskedLM, in the same run.

Both models get the same batch size and sequence length (pretraining limits: 30 text
tokens + 36 face frames + 64 speech frames = 130 positions) and the same shape; a step is
forward, loss, backward and an AdamW update. memobert's step is the real one
(``memobert_pretrain`` criterion on a collated, masked batch); each objective is timed,
and the paper's 40/20/20/20 mix is their ratio-weighted average. Steps of the two models
alternate so that machine load affects both alike. Prints samples/s and the ratio.

    python benchmarks/pretrain_step.py            # memobert_tiny and memobert_base shapes
    python benchmarks/pretrain_step.py --shapes tiny --steps 20
"""

import argparse
import statistics
import sys
import time

sys.modules.setdefault("torchaudio", None)  # transformers would import fairseq's broken torchaudio

import numpy as np  # noqa: E402
import torch  # noqa: E402

from memobert_plugin.criterions.memobert_pretrain import MemobertPretrainCriterion  # noqa: E402
from memobert_plugin.data.multimodal_dataset import collate_utterances  # noqa: E402
from memobert_plugin.data.objective_batches import ObjectiveBatchesDataset  # noqa: E402
from memobert_plugin.data.vocabulary import BertVocabulary  # noqa: E402
from memobert_plugin.models.memobert import MemobertConfig, MemobertModel  # noqa: E402
from memobert_plugin.objectives import OBJECTIVE_REGISTRY, ObjectiveData  # noqa: E402
from memobert_plugin.tasks.memobert_pretrain import (  # noqa: E402
    DEFAULT_OBJECTIVES,
    MemobertPretrainConfig,
    MemobertPretrainTask,
)

SHAPES = {
    "tiny": dict(encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=256, encoder_attention_heads=4),
    "base": dict(encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12),
}
TEXT, VISUAL, ACOUSTIC = 30, 36, 64
DIMS = {"visual": 342, "visual_fer": 8, "acoustic": 768}
VOCAB_SIZE = 30522


class _Task:
    """The parts of memobert_pretrain the step uses, without a data directory to read."""

    add_heads = MemobertPretrainTask.add_heads

    def __init__(self, objectives):
        self.objectives = objectives


class _Utterances:
    """In-memory utterances, collated as MultimodalDataset collates them."""

    def __init__(self, pad: int):
        self.pad = pad

    def collater(self, samples):
        return collate_utterances(samples, self.pad, DIMS)


def _vocab() -> BertVocabulary:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" if i % 3 else f"##p{i}" for i in range(VOCAB_SIZE - len(specials))]
    return BertVocabulary(specials + words)


def _samples(vocab, batch, rng):
    samples = []
    for i in range(batch):
        fer = rng.random((VISUAL, DIMS["visual_fer"])).astype(np.float32)
        samples.append({
            "id": i,
            "text": torch.tensor([vocab.bos(), *rng.integers(5, len(vocab), TEXT - 2), vocab.eos()]),
            "visual": torch.tensor(rng.standard_normal((VISUAL, DIMS["visual"])), dtype=torch.float32),
            "visual_fer": torch.tensor(fer / fer.sum(1, keepdims=True)),
            "acoustic": torch.tensor(rng.standard_normal((ACOUSTIC, DIMS["acoustic"])), dtype=torch.float32),
        })
    return samples


def memobert_steps(shape, batch_size, rng):
    """One step function per objective, each on its own masked batch."""
    vocab = _vocab()
    cfg = MemobertConfig(visual_feature_dim=DIMS["visual"], acoustic_feature_dim=DIMS["acoustic"], **SHAPES[shape])
    model = MemobertModel(cfg, len(vocab), vocab.pad()).train()
    data = ObjectiveData(vocab=vocab, stream_dims=DIMS)
    objectives = {n: OBJECTIVE_REGISTRY[n](MemobertPretrainConfig(), data) for n in DEFAULT_OBJECTIVES}
    task = _Task(objectives)
    task.add_heads(model)
    criterion = MemobertPretrainCriterion(None, task)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01)
    samples = _samples(vocab, batch_size, rng)
    steps = {}
    for name, objective in objectives.items():
        # the training collater with this objective alone: its masked batch, weight 1
        batch = ObjectiveBatchesDataset(_Utterances(vocab.pad()), [objective], [1.0], mode="sample", seed=1).collater(samples)

        def step(batch=batch):
            optimizer.zero_grad(set_to_none=True)
            loss, _, _ = criterion(model, batch)
            loss.backward()
            optimizer.step()

        steps[name] = step
    return steps


def hf_step(shape, batch_size, rng):
    from transformers import BertConfig, BertForMaskedLM

    dims = SHAPES[shape]
    config = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=dims["encoder_embed_dim"], num_hidden_layers=dims["encoder_layers"],
                        num_attention_heads=dims["encoder_attention_heads"], intermediate_size=dims["encoder_ffn_embed_dim"])
    model = BertForMaskedLM(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01)
    length = TEXT + VISUAL + ACOUSTIC
    input_ids = torch.tensor(rng.integers(5, VOCAB_SIZE, (batch_size, length)))
    labels = torch.where(torch.rand(batch_size, length) < 0.15, input_ids, torch.full_like(input_ids, -100))
    attention_mask = torch.ones_like(input_ids)

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        optimizer.step()

    return step


def _time(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def benchmark(shape: str, batch_size: int, steps: int, warmup: int = 2) -> None:
    rng = np.random.default_rng(0)
    ours, theirs = memobert_steps(shape, batch_size, rng), hf_step(shape, batch_size, rng)
    for _ in range(warmup):
        theirs()
        for step in ours.values():
            step()
    times = {name: [] for name in ours}
    times["hf"] = []
    for _ in range(steps):  # alternate, so load changes hit both
        times["hf"].append(_time(theirs))
        for name, step in ours.items():
            times[name].append(_time(step))
    median = {name: statistics.median(t) for name, t in times.items()}
    hf_rate = batch_size / median["hf"]
    print(f"\n{shape} shape ({SHAPES[shape]}), batch {batch_size}, sequence {TEXT}+{VISUAL}+{ACOUSTIC}, "
          f"{torch.get_num_threads()} threads, median of {steps} steps")
    print(f"  transformers BertForMaskedLM: {hf_rate:8.1f} samples/s")
    for name in ours:
        rate = batch_size / median[name]
        print(f"  memobert {name:<13} {rate:8.1f} samples/s  ratio {rate / hf_rate:.2f}x")
    mix_time = sum(ratio * median[name] for name, ratio in DEFAULT_OBJECTIVES.items())
    mix_rate = batch_size / mix_time
    print(f"  memobert 40/20/20/20 mix: {mix_rate:8.1f} samples/s  ratio {mix_rate / hf_rate:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="tiny,base")
    parser.add_argument("--batch-size", type=int, default=0, help="default: 32 for tiny, 8 for base")
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: 30 tiny, 5 base)")
    args = parser.parse_args()
    torch.manual_seed(0)
    for shape in args.shapes.split(","):
        benchmark(shape, args.batch_size or (32 if shape == "tiny" else 8), args.steps or (30 if shape == "tiny" else 5))


if __name__ == "__main__":
    main()

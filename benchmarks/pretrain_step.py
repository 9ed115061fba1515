"""Training-step throughput of memobert, of two transformers baselines and of fairseq-train, against
the machine's matrix-product throughput, all measured in the same run.

The useful work of a step is the encoder's matrix products, forward and backward, over the real
(unpadded) positions of the batch: 545 GFLOP for BERT-base, batch 8, 130 positions. The machine's
matrix-product throughput is measured at the step's own shapes (one encoder layer's products and
their gradients, timed between the steps so that load changes hit both alike); ``share`` is the
time those products alone would take at that throughput over the step's time, so 100% is the
limit and everything else (attention masking, dropout, LayerNorm, GELU, the optimizer, padding,
the vocabulary projection) shows as the missing part.

Steps (forward, loss, backward, AdamW update, the same optimizer settings everywhere):
  * transformers ``BertForMaskedLM``: logits over the whole vocabulary at every position;
  * transformers ``BertModel`` + the MLM head on the masked positions only, what a careful user writes;
  * memobert, each objective on its own masked batch through the real criterion, and the paper's
    40/20/20/20 mix as their ratio-weighted average.
Batches: ``fixed`` (30 text + 36 face + 64 speech positions per sample, the pretraining limits) and
``variable`` (lengths drawn from the demo corpus's pretraining split; memobert packs the modalities
of each sample, the transformers baselines pad each modality to its batch maximum and concatenate,
as the authors' UNITER code does). ``--fairseq-train`` also times real fairseq-train updates (its
optimizer, data loading, logging) on a data dir of fixed-shape utterances: the figure users get.

    python benchmarks/pretrain_step.py                       # tiny and base shapes
    python benchmarks/pretrain_step.py --shapes base --fairseq-train
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

sys.modules.setdefault("torchaudio", None)  # transformers would import fairseq's broken torchaudio

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fairseq.optim.adam import FairseqAdam  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from memobert_plugin.criterions.memobert_pretrain import MemobertPretrainCriterion  # noqa: E402
from memobert_plugin.data.multimodal_dataset import collate_utterances  # noqa: E402
from memobert_plugin.data.objective_batches import ObjectiveBatchesDataset  # noqa: E402
from memobert_plugin.data.vocabulary import BertVocabulary  # noqa: E402
from memobert_plugin.models.memobert import MemobertConfig, MemobertModel  # noqa: E402
from memobert_plugin.objectives import OBJECTIVE_REGISTRY, ObjectiveData  # noqa: E402
from memobert_plugin.optim.memobert_adam import MemobertAdam, MemobertAdamConfig, decay_groups  # noqa: E402
from memobert_plugin.option_lists import split_list  # noqa: E402
from memobert_plugin.tasks.memobert_pretrain import (  # noqa: E402
    DEFAULT_OBJECTIVES,
    MemobertPretrainTask,
    pretrain_config,
)

SHAPES = {
    "tiny": dict(encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=256, encoder_attention_heads=4),
    "base": dict(encoder_layers=12, encoder_embed_dim=768, encoder_ffn_embed_dim=3072, encoder_attention_heads=12),
}
TEXT, VISUAL, ACOUSTIC = 30, 36, 64
DIMS = {"visual": 342, "visual_fer": 8, "acoustic": 768}
VOCAB_SIZE = 30522
MASK_PROB = 0.15
ADAMW = dict(lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01)

Lengths = Tuple[int, int, int]  # text tokens ([CLS] and [SEP] included), face frames, speech frames


# --- batches -------------------------------------------------------------------------------
def demo_lengths() -> List[Lengths]:
    """Each utterance's lengths in the demo corpus's pretraining split, after the pretraining limits."""
    from memobert_plugin.prepare.demo_corpus import write_demo_corpus

    with tempfile.TemporaryDirectory() as root:
        corpus = write_demo_corpus(root, pretrain_utterances=400, labelled_scale=0.02)  # labelled part unused
        task = MemobertPretrainTask.setup_task(pretrain_config()(data=corpus.pretrain_data))
        data = task.load_multimodal("train")
        visual, acoustic = data.frame_lengths["visual"], data.frame_lengths["acoustic"]
        return list(zip((data.sizes - visual - acoustic).tolist(), visual.tolist(), acoustic.tolist()))


def batches(kind: str, batch_size: int, count: int, rng) -> List[List[Lengths]]:
    if kind == "fixed":
        return [[(TEXT, VISUAL, ACOUSTIC)] * batch_size]
    pool = demo_lengths()
    return [[pool[i] for i in rng.choice(len(pool), batch_size, replace=False)] for _ in range(count)]


def encoder_flops(shape: str, lengths: Sequence[Lengths]) -> float:
    """Matrix-product FLOPs of the encoder, forward and backward, over the real positions only."""
    d, f, layers = (SHAPES[shape][k] for k in ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_layers"))
    per_position = 2 * (3 * d * d + d * d + 2 * d * f)  # q/k/v, output, the two FFN products
    forward = sum(per_position * n + 2 * 2 * n * n * d for n in map(sum, lengths))  # + QK^T and PV
    return 3 * layers * forward  # backward: two products per forward product


def layer_products(shape: str, batch_size: int, length: int) -> Callable[[], float]:
    """Timer of one encoder layer's matrix products and their gradients at this batch's shapes: FLOP/s."""
    d, f, heads = (SHAPES[shape][k] for k in ("encoder_embed_dim", "encoder_ffn_embed_dim", "encoder_attention_heads"))
    rows, head = batch_size * length, d // heads
    linear = [(rows, d, 3 * d), (rows, d, d), (rows, d, f), (rows, f, d)]
    # forward x W, gradient of x (g W^T) and of W (x^T g) of each linear layer
    mm = [s for m, k, n in linear for s in ((m, k, n), (m, n, k), (k, m, n))]
    # QK^T and PV, and the two gradients of each
    bmm = [(length, head, length)] * 2 + [(length, length, head)] * 4
    g = batch_size * heads
    operands = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in mm]
    operands += [(torch.randn(g, m, k), torch.randn(g, k, n)) for m, k, n in bmm]
    flops = sum(2 * m * k * n for m, k, n in mm) + sum(2 * g * m * k * n for m, k, n in bmm)

    def rate() -> float:
        start = time.perf_counter()
        for a, b in operands:
            torch.matmul(a, b)
        return flops / (time.perf_counter() - start)

    return rate


# --- steps ---------------------------------------------------------------------------------
def _vocab() -> BertVocabulary:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" if i % 3 else f"##p{i}" for i in range(VOCAB_SIZE - len(specials))]
    return BertVocabulary(specials + words)


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


def _samples(vocab, lengths: Sequence[Lengths], rng):
    samples = []
    for i, (text, visual, acoustic) in enumerate(lengths):
        fer = rng.random((visual, DIMS["visual_fer"])).astype(np.float32) + 1e-3
        samples.append({
            "id": i,
            "text": torch.tensor([vocab.bos(), *rng.integers(5, len(vocab), text - 2), vocab.eos()]),
            "visual": torch.tensor(rng.standard_normal((visual, DIMS["visual"])), dtype=torch.float32),
            "visual_fer": torch.tensor(fer / fer.sum(1, keepdims=True)),
            "acoustic": torch.tensor(rng.standard_normal((acoustic, DIMS["acoustic"])), dtype=torch.float32),
        })
    return samples


def memobert_adam(params, **overrides) -> MemobertAdam:
    """``--optimizer memobert_adam`` with the benchmark's AdamW settings."""
    settings = dict(lr=[ADAMW["lr"]], adam_betas=str(ADAMW["betas"]), weight_decay=ADAMW["weight_decay"], tpu=False)
    return MemobertAdam(OmegaConf.structured(MemobertAdamConfig(**settings, **overrides)), params)


#: autocast dtypes of the mixed-precision steps (fp32: none)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _memobert_model(shape: str, vocab: BertVocabulary) -> Tuple[MemobertModel, _Task]:
    """The pretraining model with every objective's head, and the task parts the criterion uses."""
    cfg = MemobertConfig(visual_feature_dim=DIMS["visual"], acoustic_feature_dim=DIMS["acoustic"], **SHAPES[shape])
    model = MemobertModel(cfg, len(vocab), vocab.pad()).train()
    data = ObjectiveData(vocab=vocab, stream_dims=DIMS)
    task = _Task({n: OBJECTIVE_REGISTRY[n](pretrain_config()(), data) for n in DEFAULT_OBJECTIVES})
    task.add_heads(model)
    return model, task


def optimizer_updates(shape: str, rounds: int) -> Dict[str, float]:
    """Seconds of one update of the pretraining model's parameters (random gradients; fastest of ``rounds``,
    interleaved): fairseq's Adam, one parameter at a time, and memobert_adam's fused update."""
    params = list(_memobert_model(shape, _vocab())[0].parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    fused = memobert_adam(params)
    optimizers = {"fairseq's Adam (loop)": FairseqAdam(fused.cfg, decay_groups(params, False)), "memobert_adam": fused}
    best = dict.fromkeys(optimizers, float("inf"))
    for _ in range(rounds + 1):  # the first update allocates the moments
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def memobert_steps(shape: str, batch_lengths: List[List[Lengths]], rng, device: str = "cpu",
                   precision: str = "fp32") -> Dict[str, List[Callable]]:
    """Per objective, one step function per batch, each through the real criterion on its masked batch."""
    from fairseq.utils import apply_to_sample

    vocab = _vocab()
    model, task = _memobert_model(shape, vocab)
    objectives = task.objectives
    model.to(device)
    criterion = MemobertPretrainCriterion(None, task)
    optimizer = memobert_adam(model.parameters()).optimizer  # the torch optimizer inside fairseq's wrapper
    dtype = PRECISIONS[precision]
    scaler = torch.amp.GradScaler(device, enabled=dtype is torch.float16)  # fp16 needs loss scaling

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
            loss, _, _ = criterion(model, batch)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    steps = {}
    for name, objective in objectives.items():
        # the training collater with this objective alone: its masked batch, weight 1
        collater = ObjectiveBatchesDataset(_Utterances(vocab.pad()), [objective], [1.0], mode="sample", seed=1).collater
        collated = [apply_to_sample(lambda t: t.to(device), collater(_samples(vocab, lengths, rng)))
                    for lengths in batch_lengths]
        steps[name] = [lambda batch=batch: step(batch) for batch in collated]
    return steps


def _padded_concatenation(lengths: Sequence[Lengths], rng):
    """Token ids, attention mask and MLM labels (15% of the real text positions) of the batch with
    each modality padded to its batch maximum and the three concatenated."""
    widths = [max(sample[m] for sample in lengths) for m in range(3)]
    real = torch.zeros(len(lengths), sum(widths), dtype=torch.long)
    text = torch.zeros_like(real, dtype=torch.bool)
    for row, sample in enumerate(lengths):
        for m, (n, start) in enumerate(zip(sample, np.cumsum([0] + widths[:-1]))):
            real[row, start: start + n] = 1
        text[row, : sample[0]] = True
    input_ids = torch.tensor(rng.integers(5, VOCAB_SIZE, real.shape)) * real
    masked = text & (torch.rand(real.shape) < MASK_PROB)
    return input_ids, real, torch.where(masked, input_ids, torch.full_like(input_ids, -100))


def transformers_steps(shape: str, batch_lengths: List[List[Lengths]], rng) -> Dict[str, List[Callable]]:
    from transformers import BertConfig, BertForMaskedLM

    dims = SHAPES[shape]
    config = BertConfig(vocab_size=VOCAB_SIZE, hidden_size=dims["encoder_embed_dim"], num_hidden_layers=dims["encoder_layers"],
                        num_attention_heads=dims["encoder_attention_heads"], intermediate_size=dims["encoder_ffn_embed_dim"],
                        max_position_embeddings=512)
    full = BertForMaskedLM(config).train()
    careful = BertForMaskedLM(config).train()
    # torch's fused AdamW, as fast as memobert_adam's: the step comparison is about the model
    optimizers = {id(m): torch.optim.AdamW(m.parameters(), **ADAMW, fused=True) for m in (full, careful)}
    inputs = [_padded_concatenation(lengths, rng) for lengths in batch_lengths]

    def full_step(input_ids, attention_mask, labels):
        optimizers[id(full)].zero_grad(set_to_none=True)
        full(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss.backward()
        optimizers[id(full)].step()

    def careful_step(input_ids, attention_mask, labels):
        optimizers[id(careful)].zero_grad(set_to_none=True)
        states = careful.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        masked = labels.ne(-100)
        logits = careful.cls(states[masked])
        torch.nn.functional.cross_entropy(logits, labels[masked]).backward()
        optimizers[id(careful)].step()

    return {
        "transformers BertForMaskedLM": [lambda x=x: full_step(*x) for x in inputs],
        "transformers BertModel+masked head": [lambda x=x: careful_step(*x) for x in inputs],
    }


# --- fairseq-train ---------------------------------------------------------------------------
def _fixed_shape_data(root: str, utterances: int, rng) -> str:
    """A pretraining data dir whose every utterance has the fixed batch's lengths."""
    from memobert_plugin.data.feature_store import FeatureStoreWriter
    from memobert_plugin.prepare.binarize import TextBinarizer, write_dictionary

    vocab_txt = os.path.join(root, "vocab.txt")
    with open(vocab_txt, "w", encoding="utf-8") as handle:
        handle.write("".join(f"{token}\n" for token in _vocab().symbols))
    data = os.path.join(root, "data")
    vocab = write_dictionary(vocab_txt, data)
    words = [vocab[i] for i in range(5, len(vocab)) if not vocab[i].startswith("##")]
    for split, count in (("train", utterances), ("valid", 8)):
        text = TextBinarizer(vocab, os.path.join(data, split))
        writers = {s: FeatureStoreWriter(data, split, s, d) for s, d in DIMS.items()}
        for i in range(count):
            text.add([words[j] for j in rng.integers(len(words), size=TEXT - 2)])
            fer = rng.random((VISUAL, DIMS["visual_fer"])).astype(np.float32) + 1e-3
            frames = {"visual": rng.standard_normal((VISUAL, DIMS["visual"])), "visual_fer": fer / fer.sum(1, keepdims=True),
                      "acoustic": rng.standard_normal((ACOUSTIC, DIMS["acoustic"]))}
            for stream, writer in writers.items():
                writer.append(frames[stream].astype(np.float32), item=f"{split}:{i}")
        text.close()
        for writer in writers.values():
            writer.close()
    return data


#: fairseq-train in a child process, its Trainer.train_step timed: one update's cycle is from one
#: call's start to the next one's (data loading and logging included)
_TIMED_FAIRSEQ_TRAIN = """
import json, sys, time
import fairseq.trainer
starts, step = [], fairseq.trainer.Trainer.train_step
def timed(self, *args, **kwargs):
    starts.append(time.perf_counter())
    return step(self, *args, **kwargs)
fairseq.trainer.Trainer.train_step = timed
from fairseq_cli.train import cli_main
sys.argv = ["fairseq-train"] + sys.argv[1:]
cli_main()
print("UPDATE_STARTS", json.dumps(starts))
"""


def fairseq_train_update(shape: str, batch_size: int, updates: int, warmup: int, rng,
                         options: Sequence[str] = ("--cpu",)) -> float:
    """Median wall-clock seconds of a fairseq-train update cycle, after ``warmup`` updates; ``options``
    are further fairseq-train options (the device, precision, distributed setup)."""
    import memobert_plugin

    with tempfile.TemporaryDirectory() as root:
        data = _fixed_shape_data(root, batch_size * (updates + warmup + 1), rng)
        command = [
            data, "--user-dir", os.path.dirname(memobert_plugin.__file__), "--task", "memobert_pretrain",
            "--arch", f"memobert_{shape}", "--criterion", "memobert_pretrain", "--optimizer", "memobert_adam",
            "--adam-betas", str(ADAMW["betas"]), "--weight-decay", str(ADAMW["weight_decay"]), "--lr", str(ADAMW["lr"]),
            "--batch-size", str(batch_size), "--max-update", str(updates + warmup + 1), "--num-workers", "0",
            "--no-save", "--disable-validation", "--log-interval", "1", "--seed", "1", *options,
        ]
        env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))
        proc = subprocess.run([sys.executable, "-c", _TIMED_FAIRSEQ_TRAIN, *command], capture_output=True, text=True,
                              env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"fairseq-train {' '.join(options)} failed: {proc.stderr.strip().splitlines()[-1]}")
    out = proc.stdout
    starts = json.loads(out.rsplit("UPDATE_STARTS", 1)[1])
    if len(starts) < warmup + 2:
        raise RuntimeError(f"fairseq-train {' '.join(options)} made {len(starts)} updates, not {updates + warmup + 1}")
    return float(np.median(np.diff(starts)[warmup:]))


# --- the run ---------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    seconds: float  # per batch, mean over the rounds and batches
    useful_flops: float  # per batch
    product_rate: float  # FLOP/s of the matrix products at this batch's shapes, same rounds

    @property
    def share(self) -> float:
        return self.useful_flops / self.product_rate / self.seconds


def benchmark(shape: str, kind: str, batch_size: int, rounds: int, variable_batches: int, rng) -> List[Row]:
    batch_lengths = batches(kind, batch_size, variable_batches, rng)
    steps = {**transformers_steps(shape, batch_lengths, rng), **memobert_steps(shape, batch_lengths, rng)}
    # products at memobert's shapes: every sample padded to the batch's longest total
    products = [layer_products(shape, batch_size, max(map(sum, lengths))) for lengths in batch_lengths]
    for functions in steps.values():  # warm-up
        functions[0]()
    seconds = {name: 0.0 for name in steps}
    rates = []
    for round_ in range(rounds):  # interleaved, so load changes hit every step alike
        for b in range(len(batch_lengths)):
            rates.append(products[b]())
            for name, functions in steps.items():
                start = time.perf_counter()
                functions[b]()
                seconds[name] += time.perf_counter() - start
    calls = rounds * len(batch_lengths)
    useful = float(np.mean([encoder_flops(shape, lengths) for lengths in batch_lengths]))
    rate = float(np.median(rates))
    rows = [Row(name, total / calls, useful, rate) for name, total in seconds.items()]
    mix = sum(ratio * seconds[name] / calls for name, ratio in DEFAULT_OBJECTIVES.items())
    rows.append(Row("memobert 40/20/20/20 mix", mix, useful, rate))
    print(f"\n{shape} shape, {kind} batches of {batch_size} (lengths text+face+speech, e.g. "
          f"{batch_lengths[0][:4]}...), {torch.get_num_threads()} threads, {rounds} rounds x {len(batch_lengths)} batches")
    print(f"  encoder products: {useful / 1e9:.1f} GFLOP per batch; matrix-product throughput at these shapes "
          f"{rate / 1e9:.1f} GFLOP/s (limit {useful / rate:.2f} s per batch)")
    print(f"  {'step':<38}{'samples/s':>10}{'share':>8}{'vs BertForMaskedLM':>20}{'vs careful':>12}")
    base, careful = rows[0].seconds, rows[1].seconds
    for row in rows:
        print(f"  {row.name:<38}{batch_size / row.seconds:10.2f}{row.share:8.0%}"
              f"{base / row.seconds:19.2f}x{careful / row.seconds:11.2f}x", flush=True)
    return rows


def profile(shape: str, batch_size: int, rng, top: int = 12) -> None:
    """torch.profiler of one memobert step per objective (fixed batch): the ops taking the most time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for name, (function,) in memobert_steps(shape, batches("fixed", batch_size, 1, rng), rng).items():
        function()  # warm-up: the optimizer's moments, the allocator
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            function()
        events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"\n{shape} {name}: {total / 1e6:.2f} s of op time; top ops by own time")
        for event in events[:top]:
            print(f"  {event.key:<52}{event.self_cpu_time_total / total:7.1%}{event.count:7d} calls", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="tiny,base")
    parser.add_argument("--batches", default="fixed,variable", help="fixed, variable or both")
    parser.add_argument("--batch-size", type=int, default=0, help="default: 32 for tiny, 8 for base")
    parser.add_argument("--rounds", type=int, default=0, help="timed rounds (default: 10 tiny, 3 base)")
    parser.add_argument("--variable-batches", type=int, default=3, help="distinct variable-length batches")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fairseq-train", action="store_true", help="also time fairseq-train updates (fixed batches)")
    parser.add_argument("--profile", action="store_true", help="only profile one memobert step per objective")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    for shape in split_list(args.shapes):
        batch_size = args.batch_size or (32 if shape == "tiny" else 8)
        if args.profile:
            profile(shape, batch_size, rng)
            continue
        rounds = args.rounds or (10 if shape == "tiny" else 3)
        updates = optimizer_updates(shape, rounds)
        old, new = updates.values()
        print(f"\n{shape} shape, optimizer update: " + ", ".join(f"{k} {v:.3f} s" for k, v in updates.items())
              + f" ({old / new:.1f}x)", flush=True)
        for kind in split_list(args.batches):
            rows = benchmark(shape, kind, batch_size, rounds, args.variable_batches, rng)
            if args.fairseq_train and kind == "fixed":
                # a separate process, so not interleaved: its share uses the throughput measured just before and after
                products = layer_products(shape, batch_size, TEXT + VISUAL + ACOUSTIC)
                before = products()
                update = fairseq_train_update(shape, batch_size, updates=3, warmup=2, rng=rng)
                rate = (before + products()) / 2
                print(f"  {'fairseq-train update (optimizer, data, logs)':<38}{batch_size / update:10.2f}"
                      f"{rows[-1].useful_flops / rate / update:8.0%}   (throughput then {rate / 1e9:.1f} GFLOP/s)", flush=True)


if __name__ == "__main__":
    main()

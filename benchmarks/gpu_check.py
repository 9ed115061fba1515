"""One table of memobert's speed on one GPU (run by benchmarks/gpu_check.sh; under 8 minutes).

Rows: the base training step (the paper's 40/20/20/20 objective mix through the real criterion)
in fp32, bf16 and fp16 (autocast; fp16 with loss scaling); fairseq-train updates with --fp16 and
with --bf16, and with --bf16 as a 1-rank nccl distributed run; the acoustic (wav2vec 2.0 base) and
visual (DenseNet FER) extractors through memobert-prepare. Columns: samples/s (audio seconds/s or
faces/s for the extractors) and model FLOPs utilisation, the encoder's matrix products per second
over the GPU's dense peak for that precision (H100, H200 and A100 are recognised by name).
Models are randomly initialised: speed does not depend on the weights.

``--device cpu`` runs every row the CPU allows on a tiny shape (the test suite does this); a row
that cannot run says why.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.modules.setdefault("torchaudio", None)

import numpy as np  # noqa: E402
import torch  # noqa: E402

import pretrain_step  # noqa: E402
from memobert_plugin.tasks.memobert_pretrain import DEFAULT_OBJECTIVES  # noqa: E402

#: dense peak TFLOP/s by precision (no sparsity); fp32 is the non-tensor-core rate (TF32 is off in torch)
PEAKS = {
    "H200": {"fp32": 67, "bf16": 989, "fp16": 989},
    "H100 PCIe": {"fp32": 51, "bf16": 756, "fp16": 756},
    "H100": {"fp32": 67, "bf16": 989, "fp16": 989},
    "A100": {"fp32": 19.5, "bf16": 312, "fp16": 312},
}
FAIRSEQ_PRECISION = {"--fp16": "fp16", "--bf16": "bf16", "": "fp32"}
Row = Tuple[str, str, str, str]  # what, rate, unit, MFU or the reason it did not run


def peaks(device_name: str) -> Optional[Dict[str, float]]:
    """The peaks of a GPU by its name (``torch.cuda.get_device_name``); None when unknown."""
    return next((peak for key, peak in PEAKS.items() if all(word in device_name for word in key.split())), None)


def _mfu(flops_per_s: float, peak: Optional[Dict[str, float]], precision: str) -> str:
    return f"{flops_per_s / (peak[precision] * 1e12):.0%}" if peak else "-"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def step_rows(shape: str, batch_size: int, device: str, steps: int, peak) -> List[Row]:
    rng = np.random.default_rng(0)
    lengths = pretrain_step.batches("fixed", batch_size, 1, rng)
    flops = pretrain_step.encoder_flops(shape, lengths[0])
    rows = []
    for precision in pretrain_step.PRECISIONS:
        what = f"{shape} step, {precision} (objective mix)"
        try:
            objective_steps = pretrain_step.memobert_steps(shape, lengths, rng, device, precision)
        except RuntimeError as err:  # e.g. a precision this device cannot run
            rows.append((what, "-", "", f"not run: {str(err).splitlines()[0]}"))
            continue
        seconds = {}
        for name, (function,) in objective_steps.items():
            function()  # warm-up
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                function()
            _sync(device)
            seconds[name] = (time.perf_counter() - start) / steps
        mix = sum(ratio * seconds[name] for name, ratio in DEFAULT_OBJECTIVES.items())
        rows.append((what, f"{batch_size / mix:.1f}", "samples/s", _mfu(flops / mix, peak, precision)))
        del objective_steps
    return rows


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fairseq_rows(shape: str, batch_size: int, device: str, updates: int, peak) -> List[Row]:
    rng = np.random.default_rng(0)
    flops = pretrain_step.encoder_flops(shape, pretrain_step.batches("fixed", batch_size, 1, rng)[0])
    cuda = device.startswith("cuda")
    # fairseq 0.12 runs neither --fp16 nor --bf16 on CPU (those rows say why): the distributed row runs fp32 there
    cpu, backend, distributed_precision = ([], "nccl", "--bf16") if cuda else (["--cpu"], "gloo", "")
    # memobert_adam's decay groups need the fp32 weights unflattened (fairseq's flat fp16 copy is one 1-d tensor)
    runs = [("--fp16", ["--fp16-no-flatten-grads"]), ("--bf16", []),
            (distributed_precision, ["--distributed-world-size", "1", "--distributed-rank", "0", "--distributed-backend",
                                     backend, "--distributed-init-method", f"tcp://127.0.0.1:{_free_port()}",
                                     "--ddp-backend", "pytorch_ddp", "--distributed-no-spawn"])]
    rows = []
    for flag, options in runs:
        distributed = "--distributed-world-size" in options
        what = f"fairseq-train {flag or 'fp32'}" + (f", 1-rank {backend} distributed" if distributed else "")
        try:
            seconds = pretrain_step.fairseq_train_update(shape, batch_size, updates, 1, rng,
                                                         [*cpu, *filter(None, [flag]), *options])
        except RuntimeError as err:
            rows.append((what, "-", "", f"not run: {err}"))
            continue
        rows.append((what, f"{batch_size / seconds:.1f}", "samples/s", _mfu(flops / seconds, peak, FAIRSEQ_PRECISION[flag])))
    return rows


def _extraction_corpus(root: str, utterances: int, seconds: float, faces: int) -> str:
    """Utterances of noise ``seconds`` long, each with a folder of ``faces`` face crops."""
    import cv2
    import soundfile

    rng = np.random.default_rng(0)
    lines = ["id\ttext\taudio\tvideo"]
    for i in range(utterances):
        soundfile.write(os.path.join(root, f"{i}.wav"), 0.1 * rng.standard_normal(int(16000 * seconds)), 16000)
        os.makedirs(os.path.join(root, f"faces{i}"))
        for j in range(faces):
            cv2.imwrite(os.path.join(root, f"faces{i}", f"{j}.png"), rng.integers(0, 255, (64, 64), dtype=np.uint8))
        lines.append(f"u{i}\thello\t{i}.wav\tfaces{i}")
    manifest = os.path.join(root, "manifest.tsv")
    with open(manifest, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return manifest


def _random_checkpoints(root: str, tiny: bool) -> Tuple[str, str]:
    """A wav2vec 2.0 base (tiny: 2 small layers) and a DenseNet FER checkpoint, randomly initialised."""
    from fairseq.models.wav2vec.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

    from memobert_plugin.prepare.fer.model import DenseNetFER, save_fer_checkpoint

    shape = dict(encoder_layers=2, encoder_embed_dim=64, encoder_ffn_embed_dim=128, encoder_attention_heads=2,
                 conv_pos=16, conv_pos_groups=2) if tiny else {}
    wav2vec2 = os.path.join(root, "wav2vec2.pt")
    model = Wav2Vec2Model(Wav2Vec2Config(**shape))
    torch.save({"cfg": {"model": {"_name": "wav2vec2", **shape}, "task": {"normalize": False}},
                "model": model.state_dict()}, wav2vec2)
    fer = os.path.join(root, "fer.pt")
    save_fer_checkpoint(fer, DenseNetFER(depth=10) if tiny else DenseNetFER(), {"test_accuracy": 0.0})
    return wav2vec2, fer


def extractor_rows(device: str, tiny: bool) -> List[Row]:
    utterances, seconds, faces = (4, 2.0, 4) if tiny else (32, 8.0, 40)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        manifest = _extraction_corpus(root, utterances, seconds, faces)
        wav2vec2, fer = _random_checkpoints(root, tiny)
        common = ["--manifest", manifest, "--out", os.path.join(root, "out"), "--device", device,
                  "--max-seconds", str(seconds)]
        for stage, option, amount, unit in (("acoustic", ["--wav2vec2", wav2vec2], utterances * seconds, "audio s/s"),
                                             ("visual", ["--fer-model", fer], utterances * faces, "faces/s")):
            command = [sys.executable, "-m", "memobert_plugin.prepare.cli", stage, *common, *option]
            start = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True)
            elapsed = time.perf_counter() - start  # model loading included: an upper bound on the time
            what = f"memobert-prepare {stage} on {device}"
            if proc.returncode:
                rows.append((what, "-", "", f"failed: {proc.stderr.strip().splitlines()[-1]}"))
            else:
                rows.append((what, f"{amount / elapsed:.1f}", unit, "-"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shape", choices=sorted(pretrain_step.SHAPES), help="default: base on cuda, tiny on cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per objective and precision")
    parser.add_argument("--updates", type=int, default=20, help="timed fairseq-train updates per run")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device visible (torch.cuda.is_available() is False)")
    shape = args.shape or ("base" if args.device.startswith("cuda") else "tiny")
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    peak = peaks(name)
    print(f"\n{name}; peak TFLOP/s {peak or 'unknown (MFU not shown)'}; {shape} shape, batch {args.batch_size}, "
          f"{pretrain_step.TEXT}+{pretrain_step.VISUAL}+{pretrain_step.ACOUSTIC} positions\n")
    print("| what | rate | unit | MFU |\n|---|---:|---|---:|", flush=True)
    for rows in (lambda: step_rows(shape, args.batch_size, args.device, args.steps, peak),
                 lambda: fairseq_rows(shape, args.batch_size, args.device, args.updates, peak),
                 lambda: extractor_rows(args.device, tiny=shape == "tiny")):
        for what, rate, unit, mfu in rows():
            print(f"| {what} | {rate} | {unit} | {mfu} |", flush=True)


if __name__ == "__main__":
    main()

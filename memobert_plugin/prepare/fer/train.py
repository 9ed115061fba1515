"""``memobert-train-fer``: train the DenseNet expression model on FER+ from its official CSV files.

Inputs are the user's copies of ``fer2013.csv`` (columns ``emotion,pixels,Usage``: 48x48
grey pixels as space-separated numbers) and FER+'s ``fer2013new.csv`` (columns
``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF``:
ten annotators' votes per image), row for row the same images.

Targets are soft, from the votes: single votes are treated as noise and removed (as the
FER+ authors do); images without a FER+ name, or whose most-voted label is ``unknown``
or ``NF`` (not a face), are left out. ``Training`` rows train, ``PublicTest`` selects the
epoch, ``PrivateTest`` gives the reported test accuracy (argmax against the majority label).
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import sys
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np

from memobert_plugin.option_ranges import ranged
from memobert_plugin.prepare.fer.labels import FACE_SIZE, FER_CLASSES

# torch, tqdm and the model are imported by the functions that train, so --help and the
# argument checks do not wait for torch
if TYPE_CHECKING:
    import torch

    from memobert_plugin.prepare.fer.model import DenseNetFER

__all__ = ["FerPlusData", "read_ferplus", "accuracy", "train_fer", "main"]

logger = logging.getLogger(__name__)

FER2013_COLUMNS = ("emotion", "pixels", "Usage")
FERPLUS_COLUMNS = ("Usage", "Image name", *FER_CLASSES, "unknown", "NF")
SPLITS = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}


@dataclass
class FerPlusData:
    """Kept images ``[N, 48, 48]`` uint8, soft targets ``[N, 8]``, split name per image, and what was left out."""

    images: np.ndarray
    targets: np.ndarray
    splits: np.ndarray
    left_out: Dict[str, int]

    def part(self, split: str) -> tuple:
        keep = self.splits == split
        return self.images[keep], self.targets[keep]


def _rows(handle, path: str, columns: tuple):
    rows = csv.reader(handle)
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != columns:
        raise ValueError(f"{path}:1: expected the header {','.join(columns)}, got {header}")
    return rows


def _soft_target(votes: np.ndarray) -> Optional[np.ndarray]:
    """The 8-class vote distribution, or None when unknown/NF wins or nothing is left."""
    votes = np.where(votes <= 1, 0.0, votes)  # a single vote is annotator noise
    if votes.sum() == 0 or votes[len(FER_CLASSES):].max() >= votes[: len(FER_CLASSES)].max():
        return None
    emotions = votes[: len(FER_CLASSES)]
    return emotions / emotions.sum()


def read_ferplus(fer2013_csv: str, ferplus_csv: str) -> FerPlusData:
    """Read both CSVs in step; any malformed row is an error naming its file and line."""
    images, targets, splits, left_out = [], [], [], Counter()
    with open(fer2013_csv, encoding="utf-8", newline="") as pixels_handle, \
            open(ferplus_csv, encoding="utf-8", newline="") as votes_handle:
        pixel_rows = _rows(pixels_handle, fer2013_csv, FER2013_COLUMNS)
        vote_rows = _rows(votes_handle, ferplus_csv, FERPLUS_COLUMNS)
        line = 1
        for line, (pixel_row, vote_row) in enumerate(zip(pixel_rows, vote_rows), start=2):
            if len(pixel_row) != len(FER2013_COLUMNS):
                raise ValueError(f"{fer2013_csv}:{line}: {len(pixel_row)} fields, expected {len(FER2013_COLUMNS)}")
            if len(vote_row) != len(FERPLUS_COLUMNS):
                raise ValueError(f"{ferplus_csv}:{line}: {len(vote_row)} fields, expected {len(FERPLUS_COLUMNS)}")
            usage = pixel_row[2].strip()
            if usage not in SPLITS or vote_row[0].strip() != usage:
                raise ValueError(
                    f"{fer2013_csv}:{line} / {ferplus_csv}:{line}: Usage {usage!r} / {vote_row[0]!r}; expected the "
                    f"same value from {sorted(SPLITS)} in both (are the files row-aligned?)"
                )
            if not vote_row[1].strip():
                left_out["not in FER+ (no image name)"] += 1
                continue
            try:
                votes = np.array([float(v) for v in vote_row[2:]])
                pixels = np.array(pixel_row[1].split(), dtype=np.int64)
            except ValueError as err:
                raise ValueError(f"{ferplus_csv}:{line} or {fer2013_csv}:{line}: not numbers ({err})") from None
            if pixels.size != FACE_SIZE * FACE_SIZE or pixels.min() < 0 or pixels.max() > 255:
                raise ValueError(f"{fer2013_csv}:{line}: expected {FACE_SIZE * FACE_SIZE} pixel values in 0..255, "
                                 f"got {pixels.size}")
            target = _soft_target(votes)
            if target is None:
                left_out["unknown or not a face (most votes)"] += 1
                continue
            images.append(pixels.astype(np.uint8).reshape(FACE_SIZE, FACE_SIZE))
            targets.append(target)
            splits.append(SPLITS[usage])
        extra = [path for path, rows in ((fer2013_csv, pixel_rows), (ferplus_csv, vote_rows)) if next(rows, None)]
        if extra:
            raise ValueError(f"{extra[0]} has more rows than the other file (after line {line}); they must align")
    if not images:
        raise ValueError(f"{ferplus_csv}: no usable image")
    return FerPlusData(np.stack(images), np.stack(targets).astype(np.float32), np.array(splits), dict(left_out))


def _augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 4 pixels."""
    import torch
    import torch.nn.functional as F

    flip = torch.rand(len(batch), generator=generator) < 0.5
    batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
    padded = F.pad(batch, (4, 4, 4, 4), mode="replicate")
    dx, dy = (int(v) for v in torch.randint(0, 9, (2,), generator=generator))
    return padded[..., dy: dy + FACE_SIZE, dx: dx + FACE_SIZE]


def accuracy(network: DenseNetFER, images: np.ndarray, targets: np.ndarray, device: str, batch_size: int) -> float:
    """Share of images whose predicted class is the majority vote."""
    import torch

    from memobert_plugin.prepare.fer.model import face_tensor

    network.eval()
    hits = 0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            _, logits = network(face_tensor(images[start: start + batch_size]).to(device))
            hits += int((logits.argmax(-1).cpu().numpy() == targets[start: start + batch_size].argmax(-1)).sum())
    return hits / max(len(images), 1)


def train_fer(data: FerPlusData, out: str, epochs: int = 30, batch_size: int = 64, lr: float = 0.05,
              depth: int = 100, growth_rate: int = 12, device: str = "cpu", seed: int = 1) -> Dict[str, float]:
    """SGD with Nesterov momentum and a cosine schedule; keeps the epoch best on the validation part."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from memobert_plugin.prepare.fer.model import DenseNetFER, face_tensor, save_fer_checkpoint

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    parts = {name: data.part(name) for name in SPLITS.values()}
    empty = [name for name, (images, _) in parts.items() if len(images) == 0]
    if empty:
        raise ValueError(f"no usable images in the {empty} part(s) (Usage {[k for k, v in SPLITS.items() if v in empty]})")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    network = DenseNetFER(depth, growth_rate).to(device)
    optimizer = torch.optim.SGD(network.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)
    train_images, train_targets = parts["train"]
    steps = epochs * -(-len(train_images) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    best = {"valid_accuracy": -1.0}
    best_state = None
    for epoch in range(1, epochs + 1):
        network.train()
        order = torch.randperm(len(train_images), generator=generator).numpy()
        total = 0.0
        for start in tqdm(range(0, len(order), batch_size), desc=f"epoch {epoch}/{epochs}", unit="batch",
                          dynamic_ncols=True, leave=False):
            index = order[start: start + batch_size]
            faces = _augment(face_tensor(train_images[index]), generator).to(device)
            _, logits = network(faces)
            loss = F.cross_entropy(logits, torch.from_numpy(train_targets[index]).to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
        valid = accuracy(network, *parts["valid"], device, batch_size)
        logger.info("epoch %d: train loss %.4f, valid accuracy %.4f", epoch, total / len(order), valid)
        if valid > best["valid_accuracy"]:
            best = {"epoch": epoch, "train_loss": total / len(order), "valid_accuracy": valid}
            best_state = copy.deepcopy(network.state_dict())
    network.load_state_dict(best_state)
    best["test_accuracy"] = accuracy(network, *parts["test"], device, batch_size)
    best.update({f"{name}_images": len(images) for name, (images, _) in parts.items()})
    save_fer_checkpoint(out, network, best)
    return best


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="memobert-train-fer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fer2013", required=True, help="fer2013.csv (emotion,pixels,Usage)")
    parser.add_argument("--ferplus", required=True, help="FER+ fer2013new.csv (the vote counts)")
    parser.add_argument("--out", required=True, help="checkpoint to write (used by memobert-prepare --fer-model)")
    parser.add_argument("--epochs", type=ranged(int, 1), default=30)
    parser.add_argument("--batch-size", type=ranged(int, 1), default=64)
    parser.add_argument("--lr", type=ranged(float, 0, low_open=True), default=0.05)
    parser.add_argument("--depth", type=int, default=100, help="DenseNet-BC depth, 6n+4 up to 250 (100: 342-d features)")
    parser.add_argument("--growth-rate", type=ranged(int, 1, 64), default=12)
    parser.add_argument("--device", default="auto", help="cuda, cpu, ... (default auto: cuda when available)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not (10 <= args.depth <= 250 and (args.depth - 4) % 6 == 0):
        parser.error(f"--depth {args.depth}: DenseNet-BC depth must be 6n+4 within 10..250 (10, 16, ..., 100, ...)")
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO)
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        data = read_ferplus(args.fer2013, args.ferplus)
        logger.info("%d images kept (%s); left out: %s", len(data.images),
                    dict(Counter(data.splits.tolist())), data.left_out or "none")
        metrics = train_fer(data, args.out, args.epochs, args.batch_size, args.lr, args.depth, args.growth_rate,
                            args.device, args.seed)
    except (ValueError, OSError) as err:
        sys.exit(f"memobert-train-fer: error: {err}")
    print(f"test accuracy: {metrics['test_accuracy']:.4f} (best epoch {metrics['epoch']}, valid accuracy "
          f"{metrics['valid_accuracy']:.4f}); checkpoint: {args.out}")


if __name__ == "__main__":
    main()

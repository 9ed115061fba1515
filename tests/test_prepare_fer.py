"""memobert-train-fer on a tiny FER2013 + FER+ pair of CSVs in the official format."""

import csv
import re

import numpy as np
import pytest

from memobert_plugin.prepare.fer.model import FER_CLASSES, load_fer_model
from memobert_plugin.prepare.fer.train import FER2013_COLUMNS, FERPLUS_COLUMNS, main, read_ferplus

_PER_CLASS = {"Training": 8, "PublicTest": 3, "PrivateTest": 3}


def _image(label: int, rng: np.random.Generator) -> np.ndarray:
    """A 48x48 face stand-in whose brightness gives its class (learnable in a few steps)."""
    return np.clip(rng.normal(20 + 30 * label, 6, (48, 48)), 0, 255).astype(int)


def _write_csvs(folder, rows):
    """rows: (usage, image name, 10 votes, pixels) -> fer2013.csv and fer2013new.csv."""
    fer2013, ferplus = folder / "fer2013.csv", folder / "fer2013new.csv"
    with open(fer2013, "w", newline="") as a, open(ferplus, "w", newline="") as b:
        pixels_out, votes_out = csv.writer(a), csv.writer(b)
        pixels_out.writerow(FER2013_COLUMNS)
        votes_out.writerow(FERPLUS_COLUMNS)
        for usage, name, votes, pixels in rows:
            pixels_out.writerow([0, " ".join(map(str, np.ravel(pixels))), usage])
            votes_out.writerow([usage, name, *votes])
    return str(fer2013), str(ferplus)


def _corpus(folder):
    rng = np.random.default_rng(0)
    rows = []
    for usage, count in _PER_CLASS.items():
        for label in range(len(FER_CLASSES)):
            for _ in range(count):
                votes = [0] * 10
                votes[label] = 7
                votes[(label + 1) % 8] = 2
                votes[(label + 2) % 8] = 1  # a lone vote: noise, removed
                rows.append((usage, f"fer{len(rows):07d}.png", votes, _image(label, rng)))
    image = _image(0, rng)
    rows.append(("Training", "", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0], image))  # not in FER+
    rows.append(("Training", "fer9999998.png", [2, 0, 0, 0, 0, 0, 0, 0, 1, 7], image))  # not a face
    rows.append(("PublicTest", "fer9999999.png", [3, 0, 0, 0, 0, 0, 0, 0, 3, 4], image))  # unknown wins
    return _write_csvs(folder, rows)


def test_read_ferplus_soft_targets_and_filtering(tmp_path):
    data = read_ferplus(*_corpus(tmp_path))
    assert len(data.images) == 8 * sum(_PER_CLASS.values())
    assert data.left_out == {"not in FER+ (no image name)": 1, "unknown or not a face (most votes)": 2}
    expected = np.zeros(8)
    expected[[0, 1]] = [7 / 9, 2 / 9]
    assert np.allclose(data.targets[0], expected)
    assert data.images.dtype == np.uint8 and data.images.shape[1:] == (48, 48)
    assert {s: int((data.splits == s).sum()) for s in ("train", "valid", "test")} == {"train": 64, "valid": 24,
                                                                                    "test": 24}


def test_read_ferplus_names_the_bad_line(tmp_path):
    good = np.zeros((48, 48), int)
    votes = [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    fer2013, ferplus = _write_csvs(tmp_path, [("Training", "a.png", votes, good), ("Training", "b.png", votes, good[:4])])
    with pytest.raises(ValueError, match=r"fer2013.csv:3: expected 2304 pixel values in 0..255, got 192"):
        read_ferplus(fer2013, ferplus)
    fer2013, ferplus = _write_csvs(tmp_path, [("Training", "a.png", votes, good), ("PublicTest", "b.png", votes, good)])
    with open(ferplus, "a") as handle:
        handle.write("PrivateTest,c.png,10,0,0,0,0,0,0,0,0,0\n")
    with pytest.raises(ValueError, match="fer2013new.csv has more rows than the other file"):
        read_ferplus(fer2013, ferplus)
    with open(ferplus, "w") as handle:
        handle.write("Usage,Image name,neutral,happiness\n")
    with pytest.raises(ValueError, match="fer2013new.csv:1: expected the header Usage,Image name,neutral"):
        read_ferplus(fer2013, ferplus)


def test_train_fer_command_writes_a_checkpoint_the_extractor_loads(tmp_path, capsys):
    fer2013, ferplus = _corpus(tmp_path)
    out = tmp_path / "fer.pt"
    main(["--fer2013", fer2013, "--ferplus", ferplus, "--out", str(out), "--depth", "10", "--epochs", "8",
          "--batch-size", "16", "--lr", "0.1", "--device", "cpu"])
    accuracy = float(re.search(r"test accuracy: ([0-9.]+)", capsys.readouterr().out).group(1))
    assert accuracy >= 0.5  # chance is 1/8; brightness tells the classes apart
    model = load_fer_model(str(out))
    assert model.feature_dim == 27 and model.num_classes == 8
    rng = np.random.default_rng(1)
    _, probs = model(np.stack([_image(label, rng) for label in range(8)]).astype(np.uint8))
    assert (probs.argmax(axis=1) == np.arange(8)).mean() >= 0.5
    with pytest.raises(SystemExit, match="memobert-train-fer: error: .*no.csv"):
        main(["--fer2013", str(tmp_path / "no.csv"), "--ferplus", ferplus, "--out", str(out)])


"""Weights-only checkpoint loading: what fairseq checkpoints need loads, anything else is refused by name."""

import os
import pickle

import numpy as np
import pytest
import torch

from conftest import RunsCode
from memobert_plugin.checkpoints.safe_loading import UnsafeCheckpointError, load_checkpoint_weights_only


def test_crafted_checkpoint_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": RunsCode()}, path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt: refused: it asks to load posix.system") as refused:
        load_checkpoint_weights_only(str(path))
    assert "weights_only" not in str(refused.value)  # torch's advice to switch it off is not passed on
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # fairseq's own call (weights_only by default) refuses it too
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("content, message", [
    (os.urandom(4096), "not a readable torch checkpoint (its bytes are not torch.save data)"),
    (b"", "an empty (0-byte) file, not a checkpoint"),
])
def test_random_and_empty_bytes_are_not_called_crafted(tmp_path, content, message):
    path = tmp_path / "noise.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError) as refused:
        load_checkpoint_weights_only(str(path))
    assert str(refused.value).startswith(f"{path}: {message}")
    assert "crafted" not in str(refused.value) and "weights_only" not in str(refused.value)


def test_numpy_metric_values_are_allowed(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.ones(2)}, "extra_state": {"best": np.float64(0.5), "n": np.int64(3)}}, path)
    state = load_checkpoint_weights_only(str(path))
    assert state["extra_state"]["best"] == 0.5 and state["extra_state"]["n"] == 3

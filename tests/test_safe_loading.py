"""Weights-only checkpoint loading: what fairseq checkpoints need loads, anything else is refused."""

import pickle

import numpy as np
import pytest
import torch

from conftest import RunsCode
from memobert_plugin.safe_loading import UnsafeCheckpointError, load_checkpoint_weights_only


def test_crafted_checkpoint_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": RunsCode()}, path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match="evil.pt: refused by weights-only loading"):
        load_checkpoint_weights_only(str(path))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # fairseq's own call (weights_only by default) refuses it too
    assert not (tmp_path / "PWNED").exists()


def test_numpy_metric_values_are_allowed(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.ones(2)}, "extra_state": {"best": np.float64(0.5), "n": np.int64(3)}}, path)
    state = load_checkpoint_weights_only(str(path))
    assert state["extra_state"]["best"] == 0.5 and state["extra_state"]["n"] == 3

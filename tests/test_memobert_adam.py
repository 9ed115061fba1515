"""memobert_adam's fused update is fairseq's Adam update, and reads fairseq's optimizer state."""

import copy

import pytest
import torch
from fairseq.optim.adam import Adam, FairseqAdam
from omegaconf import OmegaConf

from memobert_plugin.optim.memobert_adam import FusedAdam, MemobertAdam, MemobertAdamConfig, decay_groups

STEPS = 5


def _cfg(**overrides):
    # large lr and eps, gradients of eps's size: a misplaced epsilon or decay moves the result by ~1e-2
    options = {**dict(lr=[0.1], adam_betas="(0.9, 0.98)", adam_eps=0.05, weight_decay=0.3, tpu=False), **overrides}
    return OmegaConf.structured(MemobertAdamConfig(**options))


def _params(dtype=torch.float32):
    torch.manual_seed(0)
    shapes = [(6, 5), (5,), (3, 4, 2), (7,)]
    return [torch.nn.Parameter(torch.randn(s).to(dtype)) for s in shapes]


def _gradients(params, step):
    generator = torch.Generator().manual_seed(step)
    for p in params:
        p.grad = (0.05 * torch.randn(p.shape, generator=generator)).to(p.dtype)


def _fairseq_reference(cfg, params):
    """fairseq's own Adam loop over memobert_adam's parameter groups."""
    return FairseqAdam(cfg, decay_groups(params, cfg.decay_norm_and_bias))


def _run(optimizer, params, steps):
    for step in steps:
        _gradients(params, step)
        optimizer.step()
    return [p.detach().float().clone() for p in params]


@pytest.mark.parametrize("overrides", [{}, {"decay_norm_and_bias": True}])
def test_fused_update_is_fairseqs_adam_update(overrides):
    fused_params, loop_params = _params(), _params()
    fused = MemobertAdam(_cfg(**overrides), fused_params)
    assert isinstance(fused.optimizer, FusedAdam)
    fused_result = _run(fused, fused_params, range(STEPS))
    loop_result = _run(_fairseq_reference(_cfg(**overrides), loop_params), loop_params, range(STEPS))
    for a, b in zip(fused_result, loop_result):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert all(state["step"] == STEPS and isinstance(state["step"], int) for state in fused.optimizer.state.values())


def test_fused_update_with_amsgrad_and_a_parameter_that_missed_steps():
    """Parameters with different step counts are updated in separate buckets, each with its own bias correction."""
    results = []
    for cls in (FusedAdam, Adam):
        params = _params()
        optimizer = cls(decay_groups(params, False), lr=0.1, betas=(0.9, 0.98), eps=0.05, weight_decay=0.3, amsgrad=True)
        for step in range(STEPS):
            _gradients(params, step)
            if step < 2:
                params[1].grad = None  # a head not drawn in the first steps
            optimizer.step()
        results.append([p.detach().clone() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_optimizer_state_saved_by_fairseqs_adam_loads_and_continues_identically():
    old_params, new_params = _params(), _params()
    old = _fairseq_reference(_cfg(), old_params)
    _run(old, old_params, range(2))
    saved = copy.deepcopy(old.state_dict())  # what checkpoints written before the fused update hold

    with torch.no_grad():
        for p, q in zip(new_params, old_params):
            p.copy_(q)
    new = MemobertAdam(_cfg(), new_params)
    new.load_state_dict(saved)
    resumed = _run(new, new_params, range(2, STEPS))
    continued = _run(old, old_params, range(2, STEPS))
    for a, b in zip(resumed, continued):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert MemobertAdam(_cfg(), _params()).optimizer.state_dict().keys() == saved.keys()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_parameters_keep_fairseqs_fp32_moments(dtype):
    """--memory-efficient-fp16/bf16 hand the optimizer half weights: fairseq's loop, fp32 moments, unchanged."""
    fused_params, loop_params = _params(dtype), _params(dtype)
    fused = MemobertAdam(_cfg(), fused_params)
    fused_result = _run(fused, fused_params, range(STEPS))
    loop_result = _run(_fairseq_reference(_cfg(), loop_params), loop_params, range(STEPS))
    for a, b in zip(fused_result, loop_result):
        assert torch.equal(a, b)
    assert all(state["exp_avg"].dtype == torch.float32 for state in fused.optimizer.state.values())


@pytest.mark.parametrize("overrides, flat", [({}, False), ({"decay_norm_and_bias": True}, True), ({"weight_decay": 0.0}, True)])
def test_flat_fp16_weights_are_refused_when_they_would_lose_the_decay_split(overrides, flat):
    """fairseq's --fp16 hands one flat tensor unless --fp16-no-flatten-grads; it asks the optimizer first."""
    assert MemobertAdam(_cfg(**overrides), _params()).supports_flat_params is flat

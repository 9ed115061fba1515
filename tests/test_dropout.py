"""memobert's dropout: torch's semantics (drop rate, scaling, gradient, seeding) with a cheaper draw."""

import pytest
import torch

from memobert_plugin.models.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_element_is_dropped_with_probability_p_and_the_mean_is_kept(p):
    torch.manual_seed(0)
    out = dropout(torch.ones(1000, 1000), p, training=True)
    dropped = out.eq(0).double().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / 1e6) ** 0.5  # 5 standard deviations of the binomial
    assert out[out.ne(0)].unique().tolist() == [pytest.approx(1 / (1 - p), rel=1e-4)]
    assert out.double().mean().item() == pytest.approx(1.0, abs=5e-3)


def test_every_one_of_the_16_bit_lanes_is_drawn_independently():
    """Each element takes its own 16 bits of a 64-bit word: no lane (element index mod 4) is biased."""
    torch.manual_seed(0)
    kept = keep_mask(torch.Size([4_000_000]), 0.5).view(-1, 4).double().mean(0)
    assert torch.all((kept - 0.5).abs() < 5 * (0.25 / 1e6) ** 0.5), kept


def test_the_gradient_is_the_kept_mask_times_the_scale():
    torch.manual_seed(0)
    x = torch.randn(64, 32, requires_grad=True)
    out = dropout(x, 0.25, training=True)
    out.sum().backward()
    kept = out.ne(0)
    assert torch.equal(x.grad, kept.float() / 0.75)
    torch.testing.assert_close(out, x.detach() * kept / 0.75)


def test_the_draw_follows_torchs_seed():
    layer = Dropout(0.3).train()
    x = torch.randn(8, 100)
    torch.manual_seed(5)
    first = layer(x)
    torch.manual_seed(5)
    assert torch.equal(layer(x), first)
    assert not torch.equal(layer(x), first)


def test_evaluation_and_zero_probability_return_the_input():
    x = torch.randn(10, 10)
    assert Dropout(0.5).eval()(x) is x
    assert torch.equal(dropout(x, 0.0, training=True), x)


def test_a_probability_of_one_is_refused():
    with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1"):
        dropout(torch.ones(3), 1.0, training=True)

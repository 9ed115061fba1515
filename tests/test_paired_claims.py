"""The paired-claim rule the slow demo-world test asserts with: t lower bound over (seed, fold) pairs vs a margin."""

import pytest
from scipy import stats

from memobert_plugin.evaluation.paired_claims import paired_claim, paired_differences, student_t_quantile


@pytest.mark.parametrize("df", [4, 9, 19, 39, 200])
def test_t_quantile_matches_scipy(df):
    assert student_t_quantile(0.95, df) == pytest.approx(stats.t.ppf(0.95, df), abs=2e-3)


def test_lower_bound_is_the_t_bound_over_pairs():
    differences = [0.30, 0.22, 0.41, 0.18, 0.35, 0.27]
    claim = paired_claim("prompt - control", differences, margin=0.15)
    n = len(differences)
    mean = sum(differences) / n
    se = stats.tstd(differences) / n ** 0.5
    assert claim.mean == pytest.approx(mean) and claim.se == pytest.approx(se)
    assert claim.lower_bound == pytest.approx(mean - stats.t.ppf(0.95, n - 1) * se, abs=1e-3 * se)
    assert claim.holds


def test_a_mean_above_the_margin_is_not_enough():
    # mean 0.17 > margin 0.15, but the pairs are noisy: the lower bound is below the margin
    claim = paired_claim("5%: prompt - direct", [0.45, -0.10, 0.30, -0.05, 0.25], margin=0.15)
    assert claim.mean > 0.15 and claim.lower_bound < 0.15 and not claim.holds


def test_a_claim_holding_by_less_than_its_standard_error_fails():
    # lower bound just above the margin (slack 0.2 SE): a redraw of the noise could flip it
    differences = [0.0, 0.02, -0.02, 0.01, -0.01, 0.0]
    claim = paired_claim("non-inferiority", differences, margin=0.0)
    margin = claim.lower_bound - 0.2 * claim.se
    claim = paired_claim("non-inferiority", differences, margin=margin)
    assert claim.lower_bound > claim.margin and not claim.holds
    assert "FAILS" in claim.describe()
    assert paired_claim("non-inferiority", differences, margin=claim.lower_bound - 1.01 * claim.se).holds


def test_non_inferiority_with_a_negative_margin():
    claim = paired_claim("all labels: finetune - direct", [0.01, -0.02, 0.03, 0.0, -0.01, 0.02, 0.01, -0.01],
                         margin=-0.05)
    assert claim.holds


def test_too_few_pairs_and_unpaired_results_are_refused():
    with pytest.raises(ValueError, match="too few"):
        paired_claim("x", [0.3, 0.4, 0.5], margin=0.1)
    with pytest.raises(ValueError, match=r"only in the first \[\(2, 3\)\]"):
        paired_differences({(1, 1): 0.5, (2, 3): 0.4}, {(1, 1): 0.3})
    assert paired_differences({(1, 2): 0.5, (1, 1): 0.4}, {(1, 1): 0.3, (1, 2): 0.25}) == {(1, 1): pytest.approx(0.1),
                                                                                           (1, 2): 0.25}

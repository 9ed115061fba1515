"""Claims about learning as paired comparisons: one setting minus another over (seed, fold) pairs,
judged by a one-sided lower confidence bound (Student t over the pairs) against a margin fixed
before the numbers are seen. A claim also has to hold by at least its own standard error, so
that it is not one redraw of the training noise away from failing.
"""

import math
from dataclasses import dataclass
from typing import Dict, Hashable, Mapping, Sequence

__all__ = ["PairedClaim", "paired_claim", "paired_differences", "student_t_quantile"]

_NORMAL_QUANTILES = {0.9: 1.2815515655446004, 0.95: 1.6448536269514722, 0.975: 1.959963984540054,
                     0.99: 2.3263478740408408}


def student_t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom (Cornish-Fisher expansion
    around the normal quantile: within 1e-3 of the exact value for df >= 4, ample for a decision)."""
    if probability not in _NORMAL_QUANTILES:
        raise ValueError(f"confidence {probability} not supported: one of {sorted(_NORMAL_QUANTILES)}")
    if df < 4:
        raise ValueError(f"{df + 1} pairs are too few for a t bound (at least 5)")
    z = _NORMAL_QUANTILES[probability]
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
            + (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3)
            + (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / (92160 * df ** 4))


@dataclass(frozen=True)
class PairedClaim:
    """``name``: mean difference over ``n`` pairs, its standard error and one-sided lower bound, against ``margin``."""

    name: str
    margin: float
    n: int
    mean: float
    se: float
    lower_bound: float
    confidence: float

    @property
    def holds(self) -> bool:
        """The lower bound clears the margin, by at least one standard error."""
        return self.lower_bound - self.margin >= self.se

    def describe(self) -> str:
        verdict = "holds" if self.holds else "FAILS"
        return (f"{self.name}: mean {self.mean:+.4f} (SE {self.se:.4f}, {self.n} pairs), one-sided "
                f"{self.confidence:.0%} lower bound {self.lower_bound:+.4f} vs margin {self.margin:+.4f}: "
                f"{verdict} (slack {self.lower_bound - self.margin:+.4f}, needs >= one SE)")


def paired_claim(name: str, differences: Sequence[float], margin: float, confidence: float = 0.95) -> PairedClaim:
    """The claim that the mean of ``differences`` (one per pair) is at least ``margin``."""
    n = len(differences)
    if n < 5:
        raise ValueError(f"{name}: {n} pairs are too few for a t bound (at least 5)")
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    se = sd / math.sqrt(n)
    return PairedClaim(name, margin, n, mean, se, mean - student_t_quantile(confidence, n - 1) * se, confidence)


def paired_differences(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> Dict[Hashable, float]:
    """``a[k] - b[k]`` for every pair key (e.g. (seed, fold)); both must have the same keys, or the pairing is off."""
    if set(a) != set(b):
        raise ValueError(f"unpaired results: only in the first {sorted(set(a) - set(b))}, "
                         f"only in the second {sorted(set(b) - set(a))}")
    return {k: a[k] - b[k] for k in sorted(a)}

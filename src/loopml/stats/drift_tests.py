"""The distances and tests of drift detection, on the sides of `drift_samples` (numpy; scipy for p-values).

Definitions (P the reference, Q the current distribution, both over finite values):

- `wasserstein(p, q)`: W1 = integral over q in (0, 1) of |Q_P(q) - Q_Q(q)|, the quantile-function form.
  Exact for the distributions held: raw rows are merged on their rank breakpoints (i/n and j/m, integer
  arithmetic, no sort), sketch atoms on their union. It equals `scipy.stats.wasserstein_distance` on raw
  rows to float rounding. On sketches (both sides bucketed alike) every value moved by at most alpha |x|, so
  by the triangle inequality |W_sketch - W_exact| <= alpha * (E|X_P| + E|X_Q|): `wasserstein_error` (E|X| read
  from the atoms, hence the factor 1 / (1 - alpha)).
- `psi(expected, actual, epsilon)`: sum over bins of (a - e) ln(a / e) with the shares floored at
  `epsilon` (1e-4, as Evidently), so an empty bin on either side adds a finite, bounded term.
- `jensen_shannon(p, q)`: the distance sqrt(JSD) with natural logs, in [0, sqrt(ln 2)]; zero shares need no
  smoothing (0 ln 0 = 0).
- `ks_pvalue`: two-sample Kolmogorov-Smirnov. Raw rows use scipy's `ks_2samp` (exact for small samples);
  sketches compute D = sup |F_P - F_Q| over the union of atoms and the asymptotic p-value scipy uses for
  large samples (`kstwo` with n m / (n + m)). Bucketing both sides alike can only lower D, so the sketch
  test errs on the side of "no drift".
- `chi2_pvalue`: chi-square test of independence of the 2 x k table of counts (categories empty on both
  sides dropped); 1.0 when fewer than two categories remain.
- `adjust_pvalues`: Benjamini-Hochberg (step-up, monotone, capped at 1), Bonferroni, or none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from loopml.stats.drift_samples import NumericSide

FloatArray = npt.NDArray[np.float64]


def wasserstein(p: NumericSide, q: NumericSide) -> float:
    """Exact W1 between the finite values of two sides (see the module docstring); NaN when one is empty."""
    if p.count == 0 or q.count == 0:
        return math.nan
    if p.cumulative is None and q.cumulative is None:
        return _wasserstein_sorted(p.values, q.values)
    support = np.union1d(p.values, q.values)
    gaps = np.diff(support)
    cdf_p = p.count_le(support[:-1]) / p.count
    cdf_q = q.count_le(support[:-1]) / q.count
    return float(np.dot(np.abs(cdf_p - cdf_q), gaps))


def wasserstein_error(p: NumericSide, q: NumericSide) -> float:
    """Upper bound of |wasserstein(p, q) - W1 of the raw values| (0 for raw rows)."""
    if p.count == 0 or q.count == 0:
        return math.nan
    # |atom - x| <= alpha |x| and |x| <= |atom| / (1 - alpha): the bound in terms of what the atoms show.
    return p.alpha / (1.0 - p.alpha) * p.mean_abs() + q.alpha / (1.0 - q.alpha) * q.mean_abs()


def _wasserstein_sorted(x: FloatArray, y: FloatArray) -> float:
    n, m = x.size, y.size
    if n == m:  # the quantile functions step at the same ranks
        return float(np.abs(x - y).mean())
    # Breakpoints of Q_x are i/n, of Q_y j/m; scaled by n*m they are the integers i*m and j*n. Their merged
    # order is known without sorting: i*m has ceil(i*m/n) of the j*n before it, j*n has floor(j*n/m) + 1.
    i = np.arange(n + 1, dtype=np.int64)
    j = np.arange(m + 1, dtype=np.int64)
    merged = np.empty(n + m + 2, dtype=np.int64)
    merged[i + (i * m + n - 1) // n] = i * m
    merged[j + (j * n) // m + 1] = j * n
    widths = np.diff(merged)
    left = merged[:-1]
    # On (left, right) Q_x = x[floor(q n)] and Q_y = y[floor(q m)]: indices left // m and left // n.
    ix = np.minimum(left // m, n - 1)
    iy = np.minimum(left // n, m - 1)
    return float(np.dot(widths, np.abs(x[ix] - y[iy])) / (n * m))


def shares(counts: FloatArray) -> FloatArray:
    """Counts -> shares of their sum (zeros when the sum is 0)."""
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def psi(expected: FloatArray, actual: FloatArray, epsilon: float = 1e-4) -> float:
    """Population stability index of two share vectors over the same bins, shares floored at `epsilon`."""
    e = np.maximum(expected, epsilon)
    a = np.maximum(actual, epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def jensen_shannon(p: FloatArray, q: FloatArray) -> float:
    """Jensen-Shannon distance (natural log) of two share vectors over the same categories."""
    m = (p + q) / 2.0
    return math.sqrt(max(0.0, (_kl(p, m) + _kl(q, m)) / 2.0))


def _kl(p: FloatArray, m: FloatArray) -> float:
    present = p > 0
    return float(np.sum(p[present] * np.log(p[present] / m[present])))


def ks_pvalue(p: NumericSide, q: NumericSide) -> tuple[float, float]:
    """(D statistic, p-value) of the two-sample KS test; (NaN, NaN) when a side is empty."""
    from scipy import stats  # type: ignore[import-untyped]  # lazily: scipy is not a core dependency

    if p.count == 0 or q.count == 0:
        return math.nan, math.nan
    if p.cumulative is None and q.cumulative is None:
        result = stats.ks_2samp(p.values, q.values)
        return float(result.statistic), float(result.pvalue)
    support = np.union1d(p.values, q.values)
    d = float(np.max(np.abs(p.count_le(support) / p.count - q.count_le(support) / q.count)))
    effective = round(p.count * q.count / (p.count + q.count))
    return d, float(min(1.0, stats.kstwo.sf(d, max(effective, 1))))


def chi2_pvalue(reference: FloatArray, current: FloatArray) -> float:
    """p-value of the chi-square test that both count vectors come from one categorical distribution."""
    from scipy import stats  # lazily, as above

    table = np.vstack([reference, current])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    return float(stats.chi2_contingency(table).pvalue)


def adjust_pvalues(p_values: Sequence[float], method: str = "bh") -> list[float]:
    """Adjusted p-values: "bh" (Benjamini-Hochberg), "bonferroni" or "none"; NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = p.copy()
    valid = ~np.isnan(p)
    k = int(valid.sum())
    if k == 0 or method == "none":
        return [float(v) for v in out]
    v = p[valid]
    if method == "bonferroni":
        out[valid] = np.minimum(1.0, v * k)
        return [float(v) for v in out]
    order = np.argsort(v)
    ranked = v[order] * k / np.arange(1, k + 1)
    # Step-up: the adjusted value of rank i is the smallest scaled p at rank >= i.
    monotone = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    adjusted = np.empty(k)
    adjusted[order] = monotone
    out[valid] = adjusted
    return [float(v) for v in out]

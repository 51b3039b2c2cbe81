"""Which matches stand out for a query: a cutoff that adapts to the query's own scores.

A flat cosine cutoff does not work (immich #5996, rclip #207): the best match of one query scores where
another query's noise starts, and every model has its own scale. So the cutoff is set per query from two
things the query itself shows: its **background**, the scores it gets against a fixed random sample of the
collection (mean and spread: what an unrelated photo scores for this query), and its **best match**:

    relevant  <=>  score >= background + SHARE * (best - background)

(background: the median of the sample's scores) and nothing is relevant when even the best match does not
stand out of the background (best < background + MIN_SPREADS * spread, the spread a robust standard
deviation). Both are ratios of the query's own scores, so they hold across models and queries. SHARE and
MIN_SPREADS were chosen on one set of held-out renderings and measured on another (bench/relevance.py;
figures in docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SHARE = 0.8
MIN_SPREADS = 1.0
SAMPLE = 2000  # photos in the background sample


@dataclass(frozen=True)
class Cutoff:
    score: float | None  # None: nothing stands out
    background_mean: float
    background_std: float


def cutoff(best: float, background: np.ndarray, share: float = SHARE, min_spreads: float = MIN_SPREADS) -> Cutoff:
    """The relevance cutoff for a query whose best match scores ``best`` and whose scores against the background
    sample are ``background``. The background's centre and spread are its median and its median absolute
    deviation (scaled to a standard deviation): the few relevant photos that fall in the sample move neither."""
    import numpy as np

    centre = float(np.median(background))
    spread = 1.4826 * float(np.median(np.abs(background - centre)))
    if best < centre + min_spreads * spread:
        return Cutoff(None, centre, spread)
    return Cutoff(centre + share * (best - centre), centre, spread)

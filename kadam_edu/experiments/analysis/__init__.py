r"""Reading a Result: every finding the book states in words, as a function of Results, per seed.

Each finding is computed once per seed of its Result (:mod:`.seeds`: a legacy result without
``"seed"`` / ``"point"`` keys is the one seed of its provenance) and reported as the median and
range over the seeds (:class:`SeedSummary`), with a verdict that counts the seeds in which the
claim holds (:class:`SeedVerdict`). One function per finding, each returning a small frozen
dataclass whose ``str`` is the paragraph a chapter prints; for one seed the numbers are those
the chapter's cells computed before they moved here.

* Chapter 2 (:mod:`.stability`): :func:`slope_law` (Fig. 1, Section 3.2: do the slopes of
  ln ||u_n||_inf follow Eq. 5's |C|/2 or the exact discrete ln(gamma) - ln(beta)/2?),
  :func:`generalisation` (Figs. 9-11, Apps. N and O), :func:`annealing` (Fig. 12, Eq. 15, App. P).
* Chapter 4 (:mod:`.kadam`): :func:`kadam_ranking` (Fig. 2, Section 4.2, App. Q).
* Chapter 5 (:mod:`.noise`): :func:`scaling_rules` (the square-root rule against the linear
  rule) and :func:`rule_growth` (the growth the rule allows against both laws).
* Chapter 6 (:mod:`.edge_of_stability`): :func:`edge_of_stability`, with :func:`edge_verdict`
  and its thresholds :data:`EDGE_BAND`, :data:`EXPONENT_BAND`.

The verdict rule (conservative): a claim is *established* when it holds in every seed and there
are at least :data:`MIN_SEEDS` (3) seeds; a seed where the claim cannot be tested (too few points,
a run that diverged, every run near chance) is *undecided* and counts against it. The words say
exactly that: "holds in 3 of 3 seeds", "holds in 2 of 3: not established at this scale", "holds
in 0 of 3: not seen at this scale", "holds in 1 of 1 seed: too few seeds to establish it (3
needed)", "undecided in all 3 seeds: not testable at this scale".

:func:`findings` (:mod:`.findings`) collects the claims of a chapter's findings and sorts them by
what the seeds show, for the chapter's summary.

:func:`table` (:mod:`.table`) prints rows as an aligned plain-text table; ``Result.table`` is
:func:`result_table`.
"""

from kadam_edu.experiments.analysis.edge_of_stability import (
    EDGE_BAND,
    EXPONENT_BAND,
    EdgeOfStability,
    EdgeRun,
    edge_of_stability,
    edge_verdict,
)
from kadam_edu.experiments.analysis.findings import Findings, findings
from kadam_edu.experiments.analysis.kadam import CHANCE, NEAR_CHANCE, KAdamRanking, kadam_ranking
from kadam_edu.experiments.analysis.noise import (
    CLEAR_SEPARATION,
    NO_GROWTH,
    RATE_TOLERANCE,
    RuleGrowth,
    ScalingRules,
    rule_growth,
    scaling_rules,
)
from kadam_edu.experiments.analysis.seeds import (
    MIN_SEEDS,
    SeedSummary,
    SeedVerdict,
    by_point,
    by_seed,
    rank_corr,
    seeds_of,
    summarise,
    verdict,
)
from kadam_edu.experiments.analysis.stability import (
    LAWS,
    Annealing,
    Generalisation,
    LawFit,
    SlopeLaw,
    agreement,
    annealing,
    annealing_rows,
    generalisation,
    late_mean,
    late_window,
    slope_law,
)
from kadam_edu.experiments.analysis.table import result_table, table

__all__ = [
    "MIN_SEEDS", "seeds_of", "by_seed", "by_point", "SeedSummary", "summarise", "SeedVerdict", "verdict", "rank_corr",
    "LAWS", "agreement", "late_window", "late_mean", "LawFit", "SlopeLaw", "slope_law", "Generalisation",
    "generalisation", "Annealing", "annealing", "annealing_rows",
    "CHANCE", "NEAR_CHANCE", "KAdamRanking", "kadam_ranking",
    "CLEAR_SEPARATION", "NO_GROWTH", "RATE_TOLERANCE", "ScalingRules", "scaling_rules", "RuleGrowth", "rule_growth",
    "EDGE_BAND", "EXPONENT_BAND", "edge_verdict", "EdgeRun", "EdgeOfStability", "edge_of_stability",
    "table", "result_table", "Findings", "findings",
]

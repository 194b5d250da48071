"""Chapter 4's finding: k-Adam and its level strategies against Adam on CIFAR-10 (Fig. 2,
Section 4.2, App. Q)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kadam_edu.experiments.analysis.seeds import (
    SeedSummary,
    SeedVerdict,
    _check_result,
    _paragraph,
    _said,
    _require,
    _seed_words,
    by_seed,
    summarise,
    verdict,
)
from kadam_edu.experiments.kadam_cifar import best_by_k
from kadam_edu.experiments.result import Result

__all__ = ["CHANCE", "NEAR_CHANCE", "KAdamRanking", "kadam_ranking"]

#: Fig. 2: a random guess among CIFAR-10's ten classes.
CHANCE = 0.1
#: Fig. 2: when no run's best test accuracy reaches this, every run is close to chance and the
#: seed cannot rank optimizers (the chapter's smoke-scale message).
NEAR_CHANCE = 0.2


@dataclass(frozen=True)
class KAdamRanking:
    """Fig. 2 (Section 4.2, App. Q) per seed, from :func:`~kadam_edu.experiments.kadam_cifar.best_by_k`
    (each (strategy, k)'s best test accuracy over the lr / weight-decay sweep).

    ``adam``: k = 1's accuracy; ``accuracy`` and ``gain`` (accuracy minus Adam's) per (strategy, k);
    ``best_k``: per strategy, the k > 1 with the best accuracy in each seed (None: none has one);
    ``max_accuracy``: the best run of each seed (below :data:`NEAR_CHANCE` every claim is undecided
    there). Verdicts: ``beats[(strategy, k)]`` (at least as good as Adam), ``inverse_exp_2`` (the
    paper's best: 2-Adam with inverse exp at least as good as Adam) and ``naive_degrades`` (naive
    k-Adam's accuracy does not rise with k).
    """

    dataset: str | None
    synthetic: bool | None
    adam: SeedSummary
    max_accuracy: SeedSummary
    accuracy: Mapping[tuple[str, int], SeedSummary]
    gain: Mapping[tuple[str, int], SeedSummary]
    best_k: Mapping[str, tuple[int | None, ...]]
    beats: Mapping[tuple[str, int], SeedVerdict]
    inverse_exp_2: SeedVerdict
    naive_degrades: SeedVerdict

    @property
    def claims(self) -> tuple[SeedVerdict, ...]:
        """Each claim once (``inverse_exp_2`` words ``beats[("inverse_exp", 2)]`` as a headline)."""
        return (*self.beats.values(), self.naive_degrades)

    def __str__(self) -> str:
        lines = [f"Fig. 2 ({self.dataset or 'data not recorded'}): best test accuracy, median [range] over "
                 f"{_seed_words(self.adam.seeds)}"]
        if self.synthetic:
            lines.append("  *** SYNTHETIC STAND-IN, NOT CIFAR-10: not comparable with the paper's Fig. 2 ***")
        lines.append(f"  Adam (k = 1): {self.adam:.4f}   chance: {CHANCE:.4f}")
        near = [s for s, v in zip(self.max_accuracy.seeds, self.max_accuracy.values) if not v >= NEAR_CHANCE]
        if near:
            lines.append(f"  seeds {near}: every run is close to chance (best < {NEAR_CHANCE}): too few steps to "
                         "compare optimizers there")
        for (strategy, k), acc in self.accuracy.items():
            if k > 1:
                lines.append(f"  {strategy:<12} k = {k:<2} {acc:.4f}, against Adam {self.gain[strategy, k]:+.4f}")
                lines.append(_said(self.beats[strategy, k], "    "))
        for strategy, ks in self.best_k.items():
            per_seed = ", ".join("--" if k is None else str(k) for k in ks)
            lines.append(f"  {strategy:<12} best k > 1 per seed: {per_seed}")
        return _paragraph(lines + [_said(self.inverse_exp_2), _said(self.naive_degrades)])


def kadam_ranking(result: Result) -> KAdamRanking:
    """Fig. 2's comparison of k-Adam and its strategies with Adam, per seed (Chapter 4's former
    cell): a row without an accuracy (diverged) is left out of every claim it would decide."""
    _check_result(result, ["fig2"])
    _require(result, ["k", "lr", "weight_decay", "best_test_accuracy"])
    seeds = by_seed(result)
    tables = {s: {(r["strategy"], r["k"]): r["best_test_accuracy"] for r in best_by_k(points)}
              for s, points in seeds.items()}
    keys = list(dict.fromkeys(key for t in tables.values() for key in t))
    strategies = list(dict.fromkeys(strategy for strategy, _ in keys))
    adam = {s: next((a for (_, k), a in t.items() if k == 1), None) for s, t in tables.items()}
    best = {s: max((a for a in t.values() if a is not None), default=None) for s, t in tables.items()}
    decides = {s: best[s] is not None and best[s] >= NEAR_CHANCE and adam[s] is not None for s in tables}

    def gain(s, key):
        acc = tables[s].get(key)
        return None if acc is None or adam[s] is None else acc - adam[s]

    beats = {key: verdict(f"{key[1]}-Adam ({key[0]}) is at least as good as Adam",
                          {s: None if not decides[s] or gain(s, key) is None else gain(s, key) >= 0 for s in tables})
             for key in keys if key[1] > 1}

    def best_k(t, strategy):
        deeper = [(a, k) for (st, k), a in t.items() if st == strategy and k > 1 and a is not None]
        return max(deeper, key=lambda ak: (ak[0], -ak[1]))[1] if deeper else None

    def naive_falls(s):
        accs = [tables[s][key] for key in sorted(k for k in keys if k[0] == "naive") if tables[s].get(key) is not None]
        return None if not decides[s] or len(accs) < 2 else all(a >= b for a, b in zip(accs, accs[1:]))

    ie2 = ("inverse_exp", 2)
    ie2_holds = dict(zip(beats[ie2].seeds, beats[ie2].holds)) if ie2 in beats else {s: None for s in tables}
    return KAdamRanking(
        dataset=result.data.get("dataset"), synthetic=result.data.get("synthetic"),
        adam=summarise(adam), max_accuracy=summarise(best),
        accuracy={key: summarise({s: t.get(key) for s, t in tables.items()}) for key in keys},
        gain={key: summarise({s: gain(s, key) for s in tables}) for key in keys},
        best_k={strategy: tuple(best_k(t, strategy) for t in tables.values()) for strategy in strategies},
        beats=beats,
        inverse_exp_2=verdict("2-Adam with inverse exp is at least as good as Adam", ie2_holds),
        naive_degrades=verdict("naive k-Adam gets worse as k grows", {s: naive_falls(s) for s in tables}),
    )

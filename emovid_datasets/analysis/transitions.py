"""First-order Markov analysis of emotions across consecutive movie clips (paper §7).

Chain rule: clips are linked only within one ``sequence_id`` (film) and only when their
``sequence_index`` values are adjacent (i and i + 1). A missing index (a segment that was
dropped, rejected or lives in another split) breaks the chain, so no transition is
invented across a gap; rows without a sequence id or index are ignored.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from ..taxonomy import EMOTIONS, VALENCES, valence_of

log = logging.getLogger(__name__)
K = len(EMOTIONS)
_INDEX = {e: i for i, e in enumerate(EMOTIONS)}


def film_chains(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[list[str]]]:
    """Per film, its maximal runs of clips with consecutive ``sequence_index``, as lists of emotions."""
    films: dict[str, dict[int, str]] = defaultdict(dict)
    for row in rows:
        film, index = row.get("sequence_id"), row.get("sequence_index")
        if film is None or index is None:
            continue
        if index in films[film]:
            log.warning("film %s: sequence_index %s appears twice (clip %s); keeping the first",
                        film, index, row.get("clip_id"))
            continue
        films[film][int(index)] = row["emotion"]
    chains: dict[str, list[list[str]]] = {}
    for film, by_index in sorted(films.items()):
        runs: list[list[str]] = []
        previous = None
        for index in sorted(by_index):
            if previous is None or index != previous + 1:
                runs.append([])
            runs[-1].append(by_index[index])
            previous = index
        chains[film] = runs
    return chains


def transition_counts(chains: Iterable[Sequence[str]]) -> np.ndarray:
    """C[i, j] = number of times emotion j directly follows emotion i (EMOTIONS order)."""
    counts = np.zeros((K, K), dtype=np.int64)
    for chain in chains:
        for a, b in zip(chain, chain[1:]):
            counts[_INDEX[a], _INDEX[b]] += 1
    return counts


def smoothed_matrix(counts: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """(C_ij + alpha) / (sum_j C_ij + K alpha): the row-wise Dirichlet posterior mean; alpha = 0 gives the MLE (NaN rows when empty)."""
    counts = np.asarray(counts, dtype=np.float64)
    num = counts + alpha
    den = num.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def stationary_distribution(matrix: np.ndarray) -> np.ndarray:
    """pi with pi P = pi, sum pi = 1: the left eigenvector of P for the eigenvalue closest to 1."""
    values, vectors = np.linalg.eig(np.asarray(matrix, dtype=np.float64).T)
    v = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return v / v.sum()


def independence_test(counts: np.ndarray) -> dict[str, Any]:
    """G-test (log-likelihood chi2) of "next emotion independent of current" on C, empty rows/columns dropped."""
    counts = np.asarray(counts)
    rows, cols = counts.sum(axis=1) > 0, counts.sum(axis=0) > 0
    table = counts[np.ix_(rows, cols)]
    result: dict[str, Any] = {"test": "G (log-likelihood ratio)", "G": None, "p": None, "dof": None,
                              "states_dropped": [e for e, r, c in zip(EMOTIONS, rows, cols) if not (r and c)]}
    if table.shape[0] < 2 or table.shape[1] < 2:
        result["note"] = "fewer than two observed states on a side; no test"
        return result
    g, p, dof, _ = sps.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    result.update(G=float(g), p=float(p), dof=int(dof))
    return result


def valence_mass(counts: np.ndarray, matrix: np.ndarray) -> dict[str, Any]:
    """Within- vs across-valence transitions: the collapsed 2x2 counts, shares, and mean off-diagonal P_ij."""
    pos = np.array([valence_of(e) == "positive" for e in EMOTIONS])
    same = pos[:, None] == pos[None, :]
    off = ~np.eye(K, dtype=bool)
    counts = np.asarray(counts)
    collapsed = [[int(counts[np.ix_(a, b)].sum()) for b in (pos, ~pos)] for a in (pos, ~pos)]
    total, changes = counts.sum(), counts[off].sum()
    return {
        "collapsed_counts": {"rows": list(VALENCES), "cols": list(VALENCES), "counts": collapsed},
        "within_share": float(counts[same].sum() / total) if total else None,
        "within_share_of_changes": float(counts[same & off].sum() / changes) if changes else None,
        "mean_offdiag_within": float(matrix[same & off].mean()),
        "mean_offdiag_across": float(matrix[~same].mean()),
    }


def bootstrap_intervals(film_counts: np.ndarray, alpha: float, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CIs of the smoothed matrix, resampling whole films with replacement (film_counts: (F, K, K))."""
    n_films = film_counts.shape[0]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_films, np.full(n_films, 1.0 / n_films), size=n_boot)  # (B, F) film multiplicities
    boot = (weights @ film_counts.reshape(n_films, K * K)).reshape(n_boot, K, K)
    mats = smoothed_matrix(boot, alpha)
    tail = (1 - level) / 2 * 100
    return np.percentile(mats, tail, axis=0), np.percentile(mats, 100 - tail, axis=0)


def _nan_to_none(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(x) else float(x) for x in row] for row in matrix]


def markov_analysis(rows: Iterable[Mapping[str, Any]], alpha: float = 1.0, n_boot: int = 1000,
                    seed: int = 0) -> dict[str, Any]:
    """The full transition analysis as JSON-ready data (matrices are lists of rows in EMOTIONS order).

    ``alpha`` must be positive: the stationary distribution needs every row defined (the unsmoothed
    estimate, with undefined rows for emotions never left, is reported as ``mle`` anyway).
    """
    if not alpha > 0:
        raise ValueError(f"--alpha must be > 0 (the smoothing the stationary distribution needs), got {alpha}")
    chains = film_chains(rows)
    film_counts = np.stack([transition_counts(runs) for runs in chains.values()]) if chains \
        else np.zeros((0, K, K), dtype=np.int64)
    counts = film_counts.sum(axis=0) if len(film_counts) else np.zeros((K, K), dtype=np.int64)
    matrix = smoothed_matrix(counts, alpha)
    pi = stationary_distribution(matrix)
    result: dict[str, Any] = {
        "states": list(EMOTIONS),
        "chain_rule": "same sequence_id and adjacent sequence_index (a gap breaks the chain)",
        "films": len(chains),
        "chains": sum(len(r) for r in chains.values()),
        "clips_in_chains": sum(len(c) for r in chains.values() for c in r),
        "transitions": int(counts.sum()),
        "alpha": alpha,
        "counts": counts.tolist(),
        "mle": _nan_to_none(smoothed_matrix(counts, 0.0)),
        "smoothed": matrix.tolist(),
        "stationary": {e: float(p) for e, p in zip(EMOTIONS, pi)},
        "self_persistence": {e: {"p_ii": float(matrix[i, i]), "over_stationary": float(matrix[i, i] / pi[i])}
                             for i, e in enumerate(EMOTIONS)},
        "independence": independence_test(counts),
        "valence": valence_mass(counts, matrix),
        "bootstrap": None,
    }
    if len(chains) >= 2 and n_boot > 0:
        low, high = bootstrap_intervals(film_counts, alpha, n_boot=n_boot, seed=seed)
        result["bootstrap"] = {"resampled": "films", "n_boot": n_boot, "level": 0.95, "seed": seed,
                               "low": low.tolist(), "high": high.tolist()}
    return result

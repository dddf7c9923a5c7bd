"""The dataset analysis: statistics against hand-computed values, and `emovid analyze` end to end."""

import base64
import io
import json
import random
from html.parser import HTMLParser

import numpy as np
import pytest
from factory import make_dataset
from PIL import Image
from scipy import stats as sps

from emovid_datasets.analysis.colour import circular_mean_deg, colour_by_group, one_way_anova, positive_ratio_by_bin
from emovid_datasets.analysis.phrases import caption_phrases, phrases_by_emotion, top_phrases
from emovid_datasets.analysis.report import format_number, lookup, write_report
from emovid_datasets.analysis.transitions import (
    K,
    bootstrap_intervals,
    film_chains,
    independence_test,
    markov_analysis,
    smoothed_matrix,
    stationary_distribution,
    transition_counts,
)
from emovid_datasets.cli import main
from emovid_datasets.taxonomy import EMOTIONS

E = {e: i for i, e in enumerate(EMOTIONS)}


def test_anova_by_hand_and_against_scipy():
    result = one_way_anova([[1, 2, 3], [4, 5, 6]])
    # SS_between = 3 (2 - 3.5)^2 + 3 (5 - 3.5)^2 = 13.5, SS_within = 4, F = 13.5 / (4 / 4)
    assert result["F"] == pytest.approx(13.5) and result["eta_squared"] == pytest.approx(13.5 / 17.5)
    assert (result["df_between"], result["df_within"]) == (1, 4)
    rng = np.random.default_rng(0)
    groups = [rng.normal(loc, 1, size=n) for loc, n in ((0, 12), (0.5, 7), (1.2, 20))]
    ours, ref = one_way_anova(groups), sps.f_oneway(*groups)
    assert ours["F"] == pytest.approx(ref.statistic, rel=1e-10) and ours["p"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert one_way_anova([[1.0, 2.0], []])["F"] is None  # one non-empty group: no test
    assert one_way_anova([[1.0, 1.0], [1.0]])["F"] is None  # no spread


def test_circular_mean_and_positive_ratio_bins():
    assert circular_mean_deg([350, 10]) == pytest.approx(0.0, abs=1e-9) or circular_mean_deg([350, 10]) == pytest.approx(360)
    assert circular_mean_deg([90, 180]) == pytest.approx(135.0)
    assert circular_mean_deg([]) is None
    bins = positive_ratio_by_bin([0.0, 0.04, 0.5, 0.5, 0.5, 1.0],
                                 ["positive", "negative", "positive", "positive", "negative", "positive"])
    by_bin = {b["bin"]: b for b in bins}
    assert len(bins) == 11
    assert (by_bin[0.0]["clips"], by_bin[0.0]["positive"], by_bin[0.0]["ratio"]) == (2, 1, 0.5)
    assert by_bin[0.5]["ratio"] == pytest.approx(2 / 3) and by_bin[1.0]["ratio"] == 1.0
    assert by_bin[0.3] == {"bin": 0.3, "clips": 0, "positive": 0, "ratio": None}


def test_colour_group_means():
    rows = [{"emotion": "amusement", "colorfulness": 0.6, "brightness": 0.8, "hue": 350},
            {"emotion": "awe", "colorfulness": 0.4, "brightness": 0.6, "hue": 10},
            {"emotion": "sadness", "colorfulness": 0.2, "brightness": 0.3, "hue": 200}]
    groups = colour_by_group(rows)
    positive = groups["valence"]["means"]["positive"]
    assert positive["n"] == 2 and positive["colorfulness"] == pytest.approx(0.5)
    assert positive["brightness"] == pytest.approx(0.7) and min(positive["hue"], 360 - positive["hue"]) < 1e-9
    assert groups["arousal"]["means"]["low"]["n"] == 3  # amusement, awe, sadness are low arousal
    assert groups["emotion"]["means"]["fear"] == {"n": 0, "colorfulness": None, "brightness": None, "hue": None}
    assert groups["valence"]["anova"]["brightness"]["F"] == pytest.approx(
        sps.f_oneway([0.8, 0.6], [0.3]).statistic)


def movie_rows():
    """Film A: 0-4 fear fear anger sadness fear, gap at 5, 6-7 amusement awe; film B: sadness fear contentment."""
    rows = [{"sequence_id": "A", "sequence_index": i, "emotion": e} for i, e in
            enumerate(["fear", "fear", "anger", "sadness", "fear"])]
    rows += [{"sequence_id": "A", "sequence_index": 6, "emotion": "amusement"},
             {"sequence_id": "A", "sequence_index": 7, "emotion": "awe"},
             {"sequence_id": None, "sequence_index": None, "emotion": "awe"}]
    rows += [{"sequence_id": "B", "sequence_index": i, "emotion": e} for i, e in
             enumerate(["sadness", "fear", "contentment"])]
    random.Random(0).shuffle(rows)
    return rows


def test_chains_respect_film_and_gap_rule():
    chains = film_chains(movie_rows())
    assert chains == {"A": [["fear", "fear", "anger", "sadness", "fear"], ["amusement", "awe"]],
                      "B": [["sadness", "fear", "contentment"]]}
    counts = transition_counts([c for runs in chains.values() for c in runs])
    expected = np.zeros((K, K), int)
    for a, b, n in [("fear", "fear", 1), ("fear", "anger", 1), ("anger", "sadness", 1), ("sadness", "fear", 2),
                    ("amusement", "awe", 1), ("fear", "contentment", 1)]:
        expected[E[a], E[b]] = n
    assert (counts == expected).all()  # no fear -> amusement across the gap, no awe -> sadness across films
    dup = movie_rows() + [{"sequence_id": "B", "sequence_index": 1, "emotion": "anger", "clip_id": "dup"}]
    assert sum(len(c) for runs in film_chains(dup).values() for c in runs) == 10


def test_smoothing_mle_and_stationary_distribution():
    counts = transition_counts([["fear", "fear", "anger"], ["sadness", "fear"], ["sadness", "fear"]])
    p = smoothed_matrix(counts, alpha=1.0)
    assert p[E["fear"], E["fear"]] == pytest.approx(2 / 10) and p[E["fear"], E["awe"]] == pytest.approx(1 / 10)
    assert p[E["sadness"], E["fear"]] == pytest.approx(3 / 10)
    assert np.allclose(p[E["disgust"]], 1 / 8)  # unseen row -> uniform
    mle = smoothed_matrix(counts, alpha=0.0)
    assert mle[E["fear"], E["anger"]] == 0.5 and np.isnan(mle[E["disgust"]]).all()
    assert np.allclose(smoothed_matrix(counts, 0.5)[E["fear"], E["fear"]], 1.5 / 6)
    two = np.array([[0.9, 0.1], [0.5, 0.5]])
    assert stationary_distribution(two) == pytest.approx([5 / 6, 1 / 6])
    pi = stationary_distribution(p)
    assert pi @ p == pytest.approx(pi) and pi.sum() == pytest.approx(1.0)


def test_independence_g_test_by_hand():
    counts = np.zeros((K, K), int)
    counts[0, 0], counts[0, 1], counts[1, 0], counts[1, 1] = 10, 2, 3, 9
    result = independence_test(counts)
    table = np.array([[10, 2], [3, 9]], float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    g = 2 * (table * np.log(table / expected)).sum()
    assert result["G"] == pytest.approx(g) and result["dof"] == 1
    assert result["p"] == pytest.approx(sps.chi2.sf(g, 1))
    assert len(result["states_dropped"]) == 6
    assert independence_test(np.eye(K, dtype=int) * 0)["G"] is None


def test_markov_analysis_valence_mass_and_bootstrap():
    result = markov_analysis(movie_rows(), alpha=1.0, n_boot=200, seed=1)
    assert (result["films"], result["chains"], result["transitions"]) == (2, 3, 7)
    valence = result["valence"]
    assert valence["collapsed_counts"]["counts"] == [[1, 0], [1, 5]]
    assert valence["within_share"] == pytest.approx(6 / 7)
    assert valence["within_share_of_changes"] == pytest.approx(5 / 6)
    p = np.array(result["smoothed"])
    within = [p[i, j] for i in range(K) for j in range(K) if i != j and (i < 4) == (j < 4)]
    across = [p[i, j] for i in range(K) for j in range(K) if (i < 4) != (j < 4)]
    assert valence["mean_offdiag_within"] == pytest.approx(np.mean(within))
    assert valence["mean_offdiag_across"] == pytest.approx(np.mean(across))
    fear = E["fear"]
    assert result["self_persistence"]["fear"]["p_ii"] == pytest.approx(2 / 11)  # (1 + 1) / (3 + 8)
    assert result["self_persistence"]["fear"]["over_stationary"] == pytest.approx(
        p[fear, fear] / result["stationary"]["fear"])
    low, high = np.array(result["bootstrap"]["low"]), np.array(result["bootstrap"]["high"])
    assert (low <= high).all() and np.allclose(low[E["disgust"]], 1 / 8) and np.allclose(high[E["disgust"]], 1 / 8)
    assert result["mle"][E["disgust"]] == [None] * K
    with pytest.raises(ValueError, match="alpha must be > 0"):  # unseen rows would leave pi undefined
        markov_analysis(movie_rows(), alpha=0.0)
    # Identical films: every bootstrap sample equals the point estimate.
    film = transition_counts([["fear", "anger", "fear"]])
    lo, hi = bootstrap_intervals(np.stack([film, film, film]), alpha=1.0, n_boot=50)
    assert np.allclose(lo, smoothed_matrix(3 * film, 1.0)) and np.allclose(hi, lo)


def test_bootstrap_intervals_span_what_resampling_films_can_give():
    fear, anger, awe = E["fear"], E["anger"], E["awe"]
    film_a, film_b = np.zeros((K, K), int), np.zeros((K, K), int)
    film_a[fear, anger] = 1  # one film goes fear -> anger, the other fear -> awe
    film_b[fear, awe] = 1
    low, high = bootstrap_intervals(np.stack([film_a, film_b]), alpha=1.0, n_boot=1000, seed=0)
    # Two films resampled: (a, a), (a, b) or (b, b), each drawn far more often than the 2.5 % tails, so the
    # 95 % interval of P(fear -> anger) runs from (b, b)'s (0 + 1) / (2 + 8) to (a, a)'s (2 + 1) / (2 + 8).
    assert (low[fear, anger], high[fear, anger]) == (pytest.approx(0.1), pytest.approx(0.3))
    assert (low[fear, awe], high[fear, awe]) == (pytest.approx(0.1), pytest.approx(0.3))
    assert low[fear, E["sadness"]] == high[fear, E["sadness"]] == pytest.approx(0.1)  # never seen: 1 / 10 always
    assert np.allclose(low[anger], 1 / K) and np.allclose(high[anger], 1 / K)  # a row no film leaves


def test_phrase_counts():
    assert caption_phrases("A funny reaction at the party.") == {"funny reaction"}
    captions = ["A funny reaction at the party.", "Funny reaction, laughing together! Funny reaction again.",
                "They are laughing together in a dark tunnel", "The video shows a dark tunnel"]
    assert caption_phrases(captions[2]) == {"laughing together", "dark tunnel"}
    assert caption_phrases("big red happy dog") == {"big red", "red happy", "happy dog", "big red happy",
                                                    "red happy dog", "big red happy dog"}
    # counted once per caption; ties alphabetical
    assert top_phrases(captions, top=3) == [("dark tunnel", 2), ("funny reaction", 2), ("laughing together", 2)]
    rows = [{"emotion": "fear", "caption": c} for c in captions[2:]] + [{"emotion": "awe", "caption": None}]
    result = phrases_by_emotion(rows, top=5)
    assert result["fear"] == [{"phrase": "dark tunnel", "captions": 2}, {"phrase": "laughing together", "captions": 1}]
    assert result["awe"] == []


class ReportParser(HTMLParser):
    """Collects image sources by kind and every element carrying a data-stat path with its text."""

    def __init__(self):
        super().__init__()
        self.plots, self.gallery, self.stats = {}, [], []
        self._stat, self._in_clip = None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and "data-plot" in a:
            self.plots[a["data-plot"]] = a["src"]
        elif tag == "figure" and a.get("class") == "clip":
            self._in_clip = a["data-clip"]
        elif tag == "img" and self._in_clip:
            self.gallery.append((self._in_clip, a["src"]))
        if "data-stat" in a:
            self._stat = [a["data-stat"], ""]

    def handle_data(self, data):
        if self._stat is not None:
            self._stat[1] += data

    def handle_endtag(self, tag):
        if self._stat is not None and tag in ("td", "span"):
            self.stats.append(tuple(self._stat))
            self._stat = None
        if tag == "figure":
            self._in_clip = None


def decode_data_uri(uri, mime):
    prefix = f"data:{mime};base64,"
    assert uri.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ds"), per_cell=2, benchmark_per_cell=1)


def test_analyze_cli_writes_report_whose_numbers_come_from_stats(dataset, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["analyze", str(dataset), "--out", str(out), "--bootstrap", "50"]) == 0
    assert "report.html" in capsys.readouterr().out
    stats = json.loads((out / "stats.json").read_text())
    parser = ReportParser()
    parser.feed((out / "report.html").read_text())

    assert set(parser.plots) == {"emotion_distribution", "colour_means", "positive_ratio", "transition_heatmap"}
    for uri in parser.plots.values():
        assert decode_data_uri(uri, "image/png").format == "PNG"
    assert len(parser.gallery) == len(stats["gallery"]) == 24  # 3 per emotion
    assert {cid for cid, _ in parser.gallery} == {g["clip_id"] for g in stats["gallery"]}
    for _, uri in parser.gallery:
        assert decode_data_uri(uri, "image/gif").format == "GIF"

    assert len(parser.stats) > 300
    for path, text in parser.stats:
        assert text == format_number(lookup(stats, path)), path
    shown = dict(parser.stats)
    assert shown["composition.per_source.sticker.clips"] == "16"
    assert shown["composition.per_source.sticker.with_audio"] == "0"
    assert shown["composition.emotions.movie.fear"] == "2"

    # Train split: movie indices 3e and 3e + 1 per emotion (3e + 2 is benchmark), so 8 chains of one self-transition.
    t = stats["transitions"]
    assert (t["films"], t["chains"], t["transitions"]) == (1, 8, 8)
    assert np.array_equal(np.array(t["counts"]), np.eye(K, dtype=int))
    assert stats["colour"]["groups"]["emotion"]["means"]["amusement"]["n"] == 6
    hue = stats["colour"]["groups"]["emotion"]["means"]
    assert hue["contentment"]["hue"] == pytest.approx(90, abs=3)  # factory encodes emotion index as 45-degree hue


def test_analyze_all_splits_links_the_benchmark_clips(dataset, tmp_path):
    paths = write_report(str(dataset), tmp_path, split="all", n_boot=0, gallery_per_emotion=1)
    stats = json.loads(paths["stats"].read_text())
    assert stats["clips"] == 72
    assert (stats["transitions"]["chains"], stats["transitions"]["transitions"]) == (1, 23)
    assert len(stats["gallery"]) == 8


def test_analyze_missing_dataset_is_a_clear_error(tmp_path):
    assert main(["analyze", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2


def test_composition_by_hand():
    from emovid_datasets.stats import composition

    rows = [{"source": "movie", "emotion": "fear", "duration": d, "has_audio": True, "caption": "c"} for d in (2, 4, 9)]
    rows += [{"source": "sticker", "emotion": "awe", "duration": 1.5, "has_audio": False, "caption": "",
              "label_source": "model"}]
    result = composition(rows)
    movie = result["per_source"]["movie"]
    assert movie["clips"] == 3 and movie["duration_mean"] == pytest.approx(5.0)
    assert movie["duration_sd"] == pytest.approx(np.sqrt(((2 - 5) ** 2 + (4 - 5) ** 2 + (9 - 5) ** 2) / 2))  # sample SD
    assert movie["duration_total"] == pytest.approx(15.0) and movie["with_audio"] == 3 and movie["with_caption"] == 3
    sticker = result["per_source"]["sticker"]
    assert (sticker["clips"], sticker["duration_sd"], sticker["with_audio"], sticker["with_caption"]) == (1, 0.0, 0, 0)
    assert result["per_source"]["animation"]["clips"] == 0
    assert result["emotions"]["movie"]["fear"] == 3 and result["emotions"]["sticker"]["awe"] == 1
    assert result["total"]["clips"] == 4 and result["total"]["duration_total"] == pytest.approx(16.5)
    assert result["label_sources"] == {"human": 3, "model": 1}

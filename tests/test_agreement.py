"""Agreement statistics against hand-computed examples (Wikipedia's Cohen and Fleiss examples)."""

import json
import math

import numpy as np
import pytest

from emovid_datasets.labelling.agreement import (
    agreement_report,
    cohen_kappa,
    count_table,
    fleiss_kappa,
    format_agreement_table,
    strength,
)


def test_cohen_kappa_wikipedia_example():
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_cohen_kappa_hand_computed_three_classes():
    a = ["fear", "fear", "anger", "anger", "awe", "awe"]
    b = ["fear", "anger", "anger", "anger", "awe", "fear"]
    # p_o = 4/6; p_e = (2*2 + 2*3 + 2*1)/36 = 12/36; kappa = (4/6 - 1/3)/(2/3) = 0.5
    assert cohen_kappa(a, b) == pytest.approx(0.5)


def test_cohen_kappa_degenerate_and_invalid():
    assert math.isnan(cohen_kappa(["fear"] * 3, ["fear"] * 3))
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="equally long"):
        cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_wikipedia_example():
    table = np.array([
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ])
    assert fleiss_kappa(table) == pytest.approx(0.2099, abs=5e-5)


def test_fleiss_kappa_perfect_agreement_and_errors():
    assert fleiss_kappa(count_table([["a", "a", "a"], ["b", "b", "b"]], ["a", "b"])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa(np.array([[3, 0], [1, 1]]))


def test_strength_words():
    assert [strength(k) for k in (-0.1, 0.1, 0.3, 0.5, 0.7, 0.9, float("nan"))] == [
        "poor", "slight", "fair", "moderate", "substantial", "almost perfect", "undefined"]


def test_agreement_report_pairs_fleiss_and_confusions():
    ratings = {
        "ann-1": {"c1": "fear", "c2": "anger", "c3": "awe", "c4": "none"},
        "ann-2": {"c1": "fear", "c2": "anger", "c3": "awe", "c4": "fear"},
        "ann-3": {"c1": "fear", "c2": "fear", "c3": "awe", "c4": "none"},
        "model": {"c1": "fear", "c2": "anger", "c3": "awe"},
    }
    report = agreement_report(ratings, model_sources=["model"])
    json.dumps(report)  # JSON-serialisable
    assert len(report["pairs"]) == 6
    pair = {(p["a"], p["b"]): p for p in report["pairs"]}
    assert pair[("ann-1", "ann-2")]["kappa"] == pytest.approx(cohen_kappa(["fear", "anger", "awe", "none"],
                                                                          ["fear", "anger", "awe", "fear"]))
    assert pair[("ann-1", "model")]["items"] == 3 and pair[("ann-1", "model")]["kind"] == "human-model"
    assert pair[("ann-1", "ann-2")]["kind"] == "human-human"
    confusion = pair[("ann-1", "ann-2")]["confusion"]
    assert confusion["labels"] == ["awe", "anger", "fear", "none"]  # taxonomy order, none last
    assert np.array(confusion["matrix"]).sum() == 4
    assert confusion["matrix"][3][2] == 1  # ann-1 none vs ann-2 fear
    # Fleiss over the three clips every source rated.
    expected = fleiss_kappa(count_table([[ratings[s][c] for s in ratings] for c in ("c1", "c2", "c3")],
                                        report["categories"]))
    assert report["fleiss"]["items"] == 3 and report["fleiss"]["kappa"] == pytest.approx(expected)
    hh = np.mean([p["kappa"] for p in report["pairs"] if p["kind"] == "human-human"])
    assert report["mean_kappa"]["human-human"] == pytest.approx(hh)
    assert report["human_model_gap"] == pytest.approx(hh - report["mean_kappa"]["human-model"])
    table = format_agreement_table(report)
    assert "ann-1 / model" in table and "Fleiss' kappa over 3 items" in table and "Confusion ann-1" in table


def test_human_model_gap_is_relative_to_the_human_human_kappa():
    people = {"ann-1": ["fear", "anger", "awe", "fear", "awe", "anger"],
              "ann-2": ["fear", "anger", "awe", "anger", "awe", "anger"]}
    model = ["fear", "fear", "awe", "fear", "anger", "anger"]
    clips = [f"c{i}" for i in range(6)]
    ratings = {name: dict(zip(clips, labels)) for name, labels in {**people, "model": model}.items()}
    report = agreement_report(ratings, model_sources=["model"])
    hh = cohen_kappa(people["ann-1"], people["ann-2"])
    hm = (cohen_kappa(people["ann-1"], model) + cohen_kappa(people["ann-2"], model)) / 2
    assert hh > hm > 0 and not math.isclose(hh, hm, rel_tol=0.1)  # dividing by the wrong kappa would show
    assert report["human_model_gap"] == pytest.approx(hh - hm)
    assert report["human_model_gap_relative"] == pytest.approx((hh - hm) / hh)
    assert f"({100 * (hh - hm) / hh:.1f} % of the human-human kappa)" in format_agreement_table(report)


def test_agreement_report_needs_two_sources():
    with pytest.raises(ValueError, match="at least two"):
        agreement_report({"a": {"c": "fear"}})
    with pytest.raises(ValueError, match="no ratings"):
        agreement_report({"a": {"c": "fear"}, "b": {"c": "fear"}}, model_sources=["m"])

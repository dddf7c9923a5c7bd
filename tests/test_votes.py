"""The 2-of-3 rule and vote files: ties, all none, none majorities, two annotators, unknown labels."""

import json

import pytest

from emovid_datasets.labelling.votes import (
    aggregate_votes,
    group_votes,
    normalise_vote,
    read_vote_file,
    write_vote_file,
)


def test_two_of_three_keeps_majority_with_confidence():
    result = aggregate_votes(["fear", "Fear ", "anger"])
    assert result.kept and result.label == "fear"
    assert result.confidence == pytest.approx(2 / 3)
    assert result.votes == ("fear", "fear", "anger") and result.reason is None


def test_unanimous_votes_have_full_confidence():
    assert aggregate_votes(["awe"] * 3).confidence == 1.0


def test_all_different_is_dropped_with_reason():
    result = aggregate_votes(["fear", "anger", "sadness"])
    assert not result.kept and result.label is None
    assert "no agreement" in result.reason and "all votes differ" in result.reason


def test_one_emotion_plus_none_votes_keeps_the_emotion():
    assert aggregate_votes(["sadness", "none", "sadness"]).label == "sadness"


def test_none_majority_and_all_none_are_dropped():
    majority = aggregate_votes(["none", "none", "fear"])
    assert not majority.kept and "no specific emotion" in majority.reason and "2 of 3" in majority.reason
    all_none = aggregate_votes(["none", "no specific emotion", "NONE"])
    assert not all_none.kept and "all votes are none" in all_none.reason
    assert all_none.votes == ("none", "none", "none")


def test_mixed_none_without_agreement_is_dropped():
    result = aggregate_votes(["none", "fear", "anger"])
    assert not result.kept and "no agreement" in result.reason


def test_ties_are_dropped_not_broken():
    result = aggregate_votes(["fear", "fear", "anger", "anger"])
    assert not result.kept and result.reason.startswith("tie between anger and fear")
    # A tie with none is a tie too.
    assert "tie" in aggregate_votes(["none", "none", "awe", "awe"]).reason


def test_two_annotators_must_agree():
    agree = aggregate_votes(["disgust", "disgust"])
    assert agree.label == "disgust" and agree.confidence == 1.0
    disagree = aggregate_votes(["disgust", "anger"])
    assert not disagree.kept and "no agreement" in disagree.reason


def test_a_single_vote_is_not_enough():
    result = aggregate_votes(["fear"])
    assert not result.kept and "only 1 vote" in result.reason
    assert "only 0 vote" in aggregate_votes([]).reason


def test_min_agree_is_configurable():
    assert aggregate_votes(["fear", "fear", "anger"], min_agree=3).reason.startswith("no agreement")


def test_unknown_label_raises_naming_the_choices():
    with pytest.raises(ValueError, match="unknown label 'happy'.*amusement.*none"):
        aggregate_votes(["happy", "fear", "fear"])
    assert normalise_vote("  No Specific   Emotion ") == "none"


def test_vote_files_round_trip_and_tolerate_extra_columns(tmp_path):
    csv_path = tmp_path / "votes.csv"
    csv_path.write_text("annotator,clip_id,label,seconds,comment\n"
                        'ann-1,c1,Fear,3.2,"scary, dark"\n'
                        "ann-2,c1,none,1.0,\n")
    assert read_vote_file(csv_path) == [{"clip_id": "c1", "annotator": "ann-1", "label": "fear"},
                                        {"clip_id": "c1", "annotator": "ann-2", "label": "none"}]
    jsonl = tmp_path / "votes.jsonl"
    jsonl.write_text(json.dumps({"clip_id": "c2", "annotator": "a", "label": "awe", "extra": [1]}) + "\n\n")
    assert read_vote_file(jsonl) == [{"clip_id": "c2", "annotator": "a", "label": "awe"}]
    votes = [{"clip_id": "x,1", "annotator": 'a"b', "label": "anger"}]
    for name in ("out.csv", "out.jsonl"):
        assert read_vote_file(write_vote_file(tmp_path / name, votes)) == votes


def test_unknown_label_in_a_file_names_file_and_line(tmp_path):
    path = tmp_path / "batch1.csv"
    path.write_text("clip_id,annotator,label\nc1,a,fear\nc2,a,fear\nc3,a,joyful\n")
    with pytest.raises(ValueError, match=r"batch1\.csv line 4: unknown label 'joyful'"):
        read_vote_file(path)
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"clip_id": "c1", "annotator": "a", "label": "fear"}\n{"clip_id": "c2", "annotator": "a", "label": "??"}\n')
    with pytest.raises(ValueError, match=r"b\.jsonl line 2: unknown label"):
        read_vote_file(jsonl)


def test_bad_vote_files_are_reported_clearly(tmp_path):
    (tmp_path / "a.csv").write_text("clip,annotator,label\nc1,a,fear\n")
    with pytest.raises(ValueError, match=r"a\.csv: missing column\(s\) clip_id"):
        read_vote_file(tmp_path / "a.csv")
    (tmp_path / "b.jsonl").write_text('{"clip_id": "c1", "annotator": "a", "label": "fear"}\n{oops\n')
    with pytest.raises(ValueError, match=r"b\.jsonl line 2: not valid JSON"):
        read_vote_file(tmp_path / "b.jsonl")
    (tmp_path / "c.csv").write_text("clip_id,annotator,label\nc1,,fear\n")
    with pytest.raises(ValueError, match=r"c\.csv line 2: empty annotator"):
        read_vote_file(tmp_path / "c.csv")
    with pytest.raises(ValueError, match="unsupported votes format"):
        read_vote_file(tmp_path / "votes.xlsx")


def test_group_votes_later_row_replaces_earlier():
    grouped = group_votes([{"clip_id": "c", "annotator": "a", "label": "fear"},
                           {"clip_id": "c", "annotator": "a", "label": "awe"},
                           {"clip_id": "c", "annotator": "b", "label": "awe"}])
    assert grouped == {"c": {"a": "awe", "b": "awe"}}


def test_simulated_annotators_are_seeded_noisy_voters():
    from emovid_datasets.labelling import simulate_votes
    from emovid_datasets.taxonomy import EMOTIONS, valence_of

    truth = {f"c{i:04d}": EMOTIONS[i % 8] for i in range(2000)}
    votes = simulate_votes(truth, error_rate=0.2, none_rate=0.05, same_valence_share=0.7, seed=3)
    assert len(votes) == 6000 and {v["annotator"] for v in votes} == {"sim-1", "sim-2", "sim-3"}
    assert votes == simulate_votes(truth, error_rate=0.2, none_rate=0.05, same_valence_share=0.7, seed=3)
    assert votes != simulate_votes(truth, error_rate=0.2, none_rate=0.05, seed=4)
    none = [v for v in votes if v["label"] == "none"]
    wrong = [v for v in votes if v["label"] not in ("none", truth[v["clip_id"]])]
    assert len(none) / 6000 == pytest.approx(0.05, abs=0.01)
    assert len(wrong) / 6000 == pytest.approx(0.2, abs=0.02)
    same = sum(valence_of(v["label"]) == valence_of(truth[v["clip_id"]]) for v in wrong)
    assert same / len(wrong) == pytest.approx(0.7, abs=0.05)
    kept = [aggregate_votes([v["label"] for v in votes if v["clip_id"] == c]) for c in list(truth)[:300]]
    assert 0.75 < sum(r.kept for r in kept) / 300 < 0.98  # most clips survive the 2-of-3 rule
    with pytest.raises(ValueError, match="error_rate"):
        simulate_votes(truth, error_rate=0.9, none_rate=0.2)


def test_vote_files_from_excel_and_other_messy_hands(tmp_path):
    bom = tmp_path / "excel.csv"
    bom.write_bytes("clip_id,annotator,label\r\nc1,ann,amusement\r\n".encode("utf-8-sig"))
    assert read_vote_file(bom) == [{"clip_id": "c1", "annotator": "ann", "label": "amusement"}]

    twice = tmp_path / "twice.csv"
    twice.write_text("clip_id,annotator,label\nc1,ann,amusement\nc2,ann,fear\nc1,ann,amusement\n")
    assert len(read_vote_file(twice)) == 2  # an identical repeat counts once
    twice.write_text("clip_id,annotator,label\nc1,ann,amusement\nc2,ann,fear\nc1,ann,sadness\n")
    with pytest.raises(ValueError, match=r"twice.csv: annotator 'ann' voted twice on 'c1'.*line 2: amusement, "
                                         r"line 4: sadness"):
        read_vote_file(twice)

    latin = tmp_path / "latin1.csv"
    latin.write_bytes("clip_id,annotator,label\nc1,Jos\xe9,fear\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.csv: not UTF-8"):
        read_vote_file(latin)

"""Human votes: read annotators' answer files and aggregate them with EmoVid's 2-of-3 rule.

A clip is kept when at least ``min_agree`` (default 2) votes name the same emotion and no other
answer has as many votes. Ties, all-different answers and majorities for ``none`` ("no specific
emotion", which the paper leaves open) drop the clip, and the reason says which case it was.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..atomic import atomic_write_text
from ..records import read_json_lines
from ..taxonomy import NONE_VOTE, VOTE_CHOICES

VOTE_COLUMNS: tuple[str, ...] = ("clip_id", "annotator", "label")
# Spellings of the ninth choice that annotation tools commonly export.
NONE_ALIASES: frozenset[str] = frozenset({NONE_VOTE, "no specific emotion", "no emotion", "neutral"})


@dataclass(frozen=True)
class VoteResult:
    """The aggregated label (None when dropped), the share of agreeing votes, the votes and why it was dropped."""

    label: str | None
    confidence: float
    votes: tuple[str, ...]
    reason: str | None = None

    @property
    def kept(self) -> bool:
        """Whether the votes gave a label (the clip stays in the dataset)."""
        return self.label is not None


def normalise_vote(value: Any) -> str:
    """One vote as an emotion name or ``none``; ValueError naming the nine choices otherwise."""
    key = " ".join(str(value if value is not None else "").strip().lower().split())
    if key in NONE_ALIASES:
        return NONE_VOTE
    if key not in VOTE_CHOICES:
        raise ValueError(f"unknown label {value!r}; expected one of {', '.join(VOTE_CHOICES)}")
    return key


def aggregate_votes(votes: Sequence[str], *, min_agree: int = 2) -> VoteResult:
    """Apply the 2-of-3 rule to one clip's votes (any number of annotators; two must agree)."""
    clean = tuple(normalise_vote(v) for v in votes)
    if len(clean) < min_agree:
        return VoteResult(None, 0.0, clean, f"only {len(clean)} vote(s); need {min_agree} agreeing")
    counts = Counter(clean).most_common()
    top_label, top = counts[0]
    confidence = top / len(clean)
    if top < min_agree:
        what = "all votes differ" if top == 1 else f"no answer has {min_agree} votes"
        return VoteResult(None, confidence, clean, f"no agreement ({what}: {', '.join(clean)})")
    tied = sorted(label for label, n in counts if n == top)
    if len(tied) > 1:
        return VoteResult(None, confidence, clean, f"tie between {' and '.join(tied)} ({top} votes each)")
    if top_label == NONE_VOTE:
        what = "all votes are none" if top == len(clean) else f"{top} of {len(clean)} votes are none"
        return VoteResult(None, confidence, clean, f"no specific emotion ({what})")
    return VoteResult(top_label, confidence, clean)


def read_vote_file(path: str | os.PathLike) -> list[dict[str, str]]:
    """Votes from a CSV or JSON-lines file, one row per annotator x clip (extra columns ignored).

    A UTF-8 byte-order mark (Excel's "CSV UTF-8") is accepted. Raises ValueError naming the file and line
    for a missing column, bad JSON, an unknown label, text that is not UTF-8, or one annotator voting
    twice on a clip with different labels (both lines named; an identical repeat counts once).
    """
    path = Path(path)
    try:
        records = _vote_records(path)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    votes: dict[tuple[str, str], dict[str, str]] = {}
    first_line: dict[tuple[str, str], Any] = {}
    for line_no, row in records:
        absent = [c for c in VOTE_COLUMNS if not str(row.get(c) or "").strip()]
        if absent:
            raise ValueError(f"{path} line {line_no}: empty {', '.join(absent)}")
        try:
            label = normalise_vote(row["label"])
        except ValueError as exc:
            raise ValueError(f"{path} line {line_no}: {exc}") from None
        key = (str(row["clip_id"]).strip(), str(row["annotator"]).strip())
        if key in votes:
            if votes[key]["label"] != label:
                raise ValueError(f"{path}: annotator {key[1]!r} voted twice on {key[0]!r} with different labels "
                                 f"(line {first_line[key]}: {votes[key]['label']}, line {line_no}: {label})")
            continue
        votes[key], first_line[key] = {"clip_id": key[0], "annotator": key[1], "label": label}, line_no
    return list(votes.values())


def _vote_records(path: Path) -> list[tuple[Any, dict[str, Any]]]:
    """(line number, row) pairs of a vote file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in VOTE_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (have {reader.fieldnames})")
            return [(reader.line_num, row) for row in reader]
    if suffix in (".jsonl", ".json"):
        return list(read_json_lines(path))
    raise ValueError(f"{path}: unsupported votes format (use .csv or .jsonl)")


def write_vote_file(path: str | os.PathLike, votes: Iterable[dict[str, Any]]) -> Path:
    """Write votes (clip_id, annotator, label) atomically as CSV or JSON lines, by suffix."""
    path = Path(path)
    rows = [{c: str(v[c]) for c in VOTE_COLUMNS} for v in votes]
    if path.suffix.lower() == ".csv":
        atomic_write_text(path, csv_text(rows, VOTE_COLUMNS))
    else:
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def csv_text(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV text with a header (values that are lists are joined with '|')."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "|".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in row.items()})
    return buffer.getvalue()


def group_votes(votes: Iterable[dict[str, str]]) -> dict[str, dict[str, str]]:
    """clip_id -> {annotator: label}; a later row for the same clip and annotator replaces an earlier one."""
    grouped: dict[str, dict[str, str]] = {}
    for vote in votes:
        grouped.setdefault(vote["clip_id"], {})[vote["annotator"]] = vote["label"]
    return grouped

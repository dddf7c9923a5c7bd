"""Several evaluated runs side by side: one Table 3 with a row per run, the paper's reported rows and the
evaluator's real-video ceiling, written as Markdown, JSON and a small HTML page (per-emotion heatmaps and
sample frames of each run)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..atomic import atomic_write_text
from ..media import MediaError, sample_frames
from ..taxonomy import EMOTIONS
from .evaluator import REFERENCE_NAME

# Table 3 of Qiu et al., "EmoVid" (AAAI-26), as printed; transcribed in shared/notes/paper.md §11.
REPORTED_SOURCE = "Qiu et al., EmoVid (AAAI-26), Table 3 as printed (shared/notes/paper.md §11)"
REPORTED: tuple[tuple[str, str, float, Optional[float], Optional[float], float, float, float], ...] = (
    # task, method, FVD, CLIP, SD, Flicker, EA-2, EA-8
    ("t2v", "VideoCrafter-V2", 610.1, 0.3012, None, 0.0184, 80.42, 42.50),
    ("t2v", "HunyuanVideo", 552.6, 0.2776, None, 0.0116, 76.87, 40.41),
    ("t2v", "CogVideoX", 584.0, 0.3013, None, 0.0213, 82.91, 44.58),
    ("t2v", "Wan (before)", 594.3, 0.2982, None, 0.0091, 84.17, 44.16),
    ("t2v", "Wan (after)", 573.7, 0.3021, None, 0.0143, 88.33, 48.33),
    ("i2v", "DynamiCrafter512", 512.3, None, 0.7288, 0.0280, 90.41, 71.25),
    ("i2v", "HunyuanVideo", 544.6, None, 0.7244, 0.0233, 89.17, 70.00),
    ("i2v", "CogVideoX", 528.4, None, 0.7214, 0.0331, 90.83, 70.83),
    ("i2v", "Wan (before)", 517.9, None, 0.7146, 0.0325, 91.25, 71.30),
    ("i2v", "Wan (after)", 517.8, None, 0.7193, 0.0324, 94.58, 76.25),
)
REPORTED_NOTE = ("reported rows: the paper's values with its own generation settings, FVD backbone, CLIP model and "
                 "NVILA EA classifier; they place a run, they are not measured here")
MEASURED, REPORTED_KIND, CEILING = "measured", "reported (paper)", "evaluator ceiling"


def _value(metric: Any) -> Optional[float]:
    """A metric as a float: EA entries are dicts with a ``value``; None stays None."""
    return metric["value"] if isinstance(metric, Mapping) else metric


def _second(task: str) -> str:
    return "clip" if task == "t2v" else "sd"


def table_rows(runs: Mapping[str, Mapping[str, Any]], task: str) -> list[dict[str, Any]]:
    """Table 3's rows: each run's overall metrics, the paper's rows for ``task``, and the ceiling row(s)."""
    key = _second(task)
    rows = [{"task": task, "method": name, "kind": MEASURED, "n": r["overall"]["n"], "fvd": r["overall"]["fvd"],
             "second": r["overall"][key], "flicker": r["overall"]["flicker"], "ea2": _value(r["overall"]["ea2"]),
             "ea8": _value(r["overall"]["ea8"])} for name, r in runs.items()]
    rows += [{"task": t, "method": method, "kind": REPORTED_KIND, "n": 240, "fvd": fvd,
              "second": clip if task == "t2v" else sd, "flicker": flick, "ea2": ea2, "ea8": ea8}
             for t, method, fvd, clip, sd, flick, ea2, ea8 in REPORTED if t == task]
    references = {name: r["reference"] for name, r in runs.items() if r.get("reference")}
    distinct = {json.dumps(ref, sort_keys=True) for ref in references.values()}
    for name, ref in references.items():
        label = REFERENCE_NAME if len(distinct) == 1 else f"{REFERENCE_NAME}, clips of {name}"
        rows.append({"task": task, "method": label, "kind": CEILING, "n": ref["n"], "fvd": None, "second": None,
                     "flicker": None, "ea2": _value(ref["ea2"]), "ea8": _value(ref["ea8"])})
        if len(distinct) == 1:
            break
    return rows


def build_report(runs: Mapping[str, Mapping[str, Any]], task: str) -> dict[str, Any]:
    """The multi-run report: the table rows, each run's full result, and the notes of all runs."""
    notes = sorted({n for r in runs.values() for n in r["notes"]} | {REPORTED_NOTE})
    classifiers = {json.dumps(r.get("classifier"), sort_keys=True) for r in runs.values() if r.get("classifier")}
    notes += [f"EA classifier: {info['spec']} (sha256 {info.get('sha256') or 'unknown'})"
              for info in map(json.loads, sorted(classifiers))]
    return {"task": task, "rows": table_rows(runs, task), "reported_source": REPORTED_SOURCE, "notes": notes,
            "runs": dict(runs)}


def _fmt(value: Optional[float], spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


_SPECS = {"fvd": ".1f", "second": ".4f", "flicker": ".4f", "ea2": ".2f", "ea8": ".2f"}


def _header(task: str) -> list[str]:
    return ["Task", "Method", "Row", "N", "FVD↓", "CLIP↑" if task == "t2v" else "SD↑", "Flicker↓", "EA-2↑", "EA-8↑"]


def _cells(row: Mapping[str, Any]) -> list[str]:
    return [row["task"].upper(), row["method"], row["kind"], str(row["n"])] + \
        [_fmt(row[k], spec) for k, spec in _SPECS.items()]


def _markdown(header: Sequence[str], lines: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    text = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in [header, *lines]]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return text


def format_report(report: Mapping[str, Any], prefix: str = "note: ") -> str:
    """Table 3 as a Markdown table (a row per run, the reported rows, the ceiling), then the notes, each after ``prefix``."""
    table = _markdown(_header(report["task"]), [_cells(r) for r in report["rows"]])
    notes = list(report["notes"]) + [f"source of the reported rows: {report['reported_source']}"]
    return "\n".join(table + ([""] if prefix.startswith("-") else []) + [prefix + n for n in notes])


BREAKDOWN = (("ea8", "EA-8↑", ".1f"), ("ea2", "EA-2↑", ".1f"), ("second", None, ".3f"), ("flicker", "Flicker↓", ".4f"),
             ("fvd", "FVD↓", ".0f"))


def emotion_breakdown(report: Mapping[str, Any], metric: str) -> tuple[list[str], list[str], np.ndarray]:
    """(run names, emotions, runs x emotions matrix of ``metric``, NaN where absent) from the per-emotion results."""
    key = _second(report["task"]) if metric == "second" else metric
    names = list(report["runs"])
    emotions = [e for e in EMOTIONS if any(e in r["per_emotion"] for r in report["runs"].values())]
    matrix = np.full((len(names), len(emotions)), np.nan)
    for i, name in enumerate(names):
        for j, emotion in enumerate(emotions):
            value = _value(report["runs"][name]["per_emotion"].get(emotion, {}).get(key))
            matrix[i, j] = np.nan if value is None else value
    return names, emotions, matrix


def _breakdowns(report: Mapping[str, Any]) -> list[tuple[str, str, list[str], list[str], np.ndarray]]:
    """(title, format, names, emotions, matrix) for every breakdown metric with at least one value."""
    out = []
    for metric, title, spec in BREAKDOWN:
        names, emotions, matrix = emotion_breakdown(report, metric)
        if not np.isnan(matrix).all():
            out.append((title or _header(report["task"])[5], spec, names, emotions, matrix))
    return out


def breakdown_markdown(report: Mapping[str, Any]) -> str:
    """The per-emotion breakdown as one Markdown table per metric."""
    parts = []
    for title, spec, names, emotions, matrix in _breakdowns(report):
        lines = [[name] + [_fmt(float(v), spec) for v in row] for name, row in zip(names, matrix)]
        parts.append("\n".join([f"### {title} per emotion", ""] + _markdown(["Run", *emotions], lines)))
    return "\n\n".join(parts)


def heatmap_png(report: Mapping[str, Any]) -> Optional[bytes]:
    """The per-emotion breakdown as heatmaps (one panel per metric, runs x emotions) in a PNG; None without values."""
    panels = _breakdowns(report)
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(panels[0][2])
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, (0.5 * rows + 1.4) * len(panels)), squeeze=False)
    for ax, (title, spec, names, emotions, matrix) in zip(axes[:, 0], panels):
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(emotions)), emotions, rotation=30)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(f"{title} per emotion")
        for (i, j), value in np.ndenumerate(matrix):
            if not np.isnan(value):  # dark text on the bright end of the colour map
                colour = "k" if image.norm(value) > 0.6 else "w"
                ax.text(j, i, format(value, spec), ha="center", va="center", color=colour, fontsize=8)
    out = io.BytesIO()
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=80)
    plt.close(fig)
    return out.getvalue()


def sample_clips(report: Mapping[str, Any], count: int = 4) -> list[str]:
    """Up to ``count`` clip ids every run scored (evenly spread in id order), for side-by-side samples."""
    common = sorted(set.intersection(*({c["clip_id"] for c in r["per_clip"]} for r in report["runs"].values())))
    if len(common) <= count:
        return common
    return [common[i] for i in np.linspace(0, len(common) - 1, count).round().astype(int)]


def frame_strip(video: Path, frames: int = 3, height: int = 72) -> bytes:
    """``frames`` evenly spaced frames of ``video`` side by side, ``height`` px high, as PNG bytes."""
    from PIL import Image

    strip = Image.fromarray(np.concatenate(list(sample_frames(video, frames)), axis=1))
    buf = io.BytesIO()
    strip.resize((max(1, round(strip.width * height / strip.height)), height)).save(buf, format="PNG")
    return buf.getvalue()


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def report_html(report: Mapping[str, Any], samples: int = 4) -> str:
    """A small self-contained page: the table, the per-emotion heatmaps and sample frames of each run."""
    header = "".join(f"<th>{html.escape(h)}</th>" for h in _header(report["task"]))
    body = "".join(f'<tr class="{html.escape(r["kind"].split()[0])}">' + "".join(
        f"<td>{html.escape(c)}</td>" for c in _cells(r)) + "</tr>" for r in report["rows"])
    parts = [f"<h1>EmoVid benchmark, {report['task'].upper()}</h1>", f"<table><tr>{header}</tr>{body}</table>",
             "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"]) +
             f"<li>source of the reported rows: {html.escape(report['reported_source'])}</li></ul>"]
    heat = heatmap_png(report)
    if heat:
        parts += ["<h2>Per emotion</h2>", _img(heat, "per-emotion heatmaps")]
    clips = sample_clips(report, samples)
    if clips:
        parts.append("<h2>Samples (3 evenly spaced frames)</h2><table><tr><th>run</th>" +
                     "".join(f"<th>{html.escape(c)}</th>" for c in clips) + "</tr>")
        for name, result in report["runs"].items():
            cells = []
            for cid in clips:
                try:
                    cells.append(_img(frame_strip(Path(result["generated_dir"]) / f"{cid}.mp4"), f"{name} {cid}"))
                except (MediaError, OSError) as exc:
                    cells.append(html.escape(f"unreadable: {exc}"))
            parts.append(f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:3px 8px}tr.reported{color:#666;font-style:italic}tr.evaluator{color:#264}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>EmoVid benchmark</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>")


def report_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """The report's JSON (``out``, a .json file), Markdown and HTML paths; ValueError for another suffix."""
    out = Path(out)
    if out.suffix != ".json":
        raise ValueError(f"{out}: the report's --out must be a .json file (the .md and .html go beside it)")
    return out, out.with_suffix(".md"), out.with_suffix(".html")


def write_report(report: Mapping[str, Any], out: str | Path) -> tuple[Path, Path, Path]:
    """Write the report as JSON, Markdown and HTML (see `report_paths`), atomically; returns the paths."""
    json_path, md_path, html_path = report_paths(out)
    markdown = f"# EmoVid benchmark, {report['task'].upper()}\n\n{format_report(report, '- ')}\n\n{breakdown_markdown(report)}\n"
    atomic_write_text(json_path, json.dumps(report, indent=1))
    atomic_write_text(md_path, markdown)
    atomic_write_text(html_path, report_html(report))
    return json_path, md_path, html_path

"""Build the analysis `stats.json` and a self-contained `report.html` (plots and thumbnails as data URIs).

Every number in the HTML is formatted from the stats dict by `format_number` and carries a
``data-stat`` attribute with its JSON path, so the report can be checked against stats.json.
"""

from __future__ import annotations

import base64
import html
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..media import MediaError
from ..schema import MEDIA_COLUMNS
from ..stats import composition, decoded_rows
from ..taxonomy import EMOTIONS, SOURCES, arousal_of, valence_of
from .colour import ATTRIBUTES, colour_analysis
from .phrases import phrases_by_emotion
from .plots import PLOTS
from .thumbnails import animated_thumbnail
from .transitions import markov_analysis

log = logging.getLogger(__name__)
GALLERY_FIELDS = ("clip_id", "source", "emotion", "colorfulness", "brightness", "hue", "duration", "caption")


def load_split(dataset: str, config: str = "default", split: str = "train") -> Any:
    """The split to analyse as a `datasets.Dataset` with undecoded media; ``split="all"`` concatenates every split."""
    import datasets

    from ..loading import load_emovid, without_media_decoding

    if split == "all":
        dsd = load_emovid(dataset, config, decode_media=False)
        return without_media_decoding(datasets.concatenate_datasets(list(dsd.values())))
    return load_emovid(dataset, config, split=split, decode_media=False)


def select_gallery(rows: Sequence[Mapping[str, Any]], per_emotion: int = 3) -> list[int]:
    """Row indices of up to ``per_emotion`` clips per emotion, taken round-robin over the sources."""
    chosen: list[int] = []
    for emotion in EMOTIONS:
        pools = [[i for i, r in enumerate(rows) if r["emotion"] == emotion and r["source"] == s] for s in SOURCES]
        picked: list[int] = []
        while len(picked) < per_emotion and any(pools):
            for pool in pools:
                if pool and len(picked) < per_emotion:
                    picked.append(pool.pop(0))
        chosen.extend(picked)
    return chosen


def build_stats(ds: Any, *, alpha: float = 1.0, n_boot: int = 1000, seed: int = 0, top_phrases: int = 5,
                gallery_per_emotion: int = 3) -> dict[str, Any]:
    """All statistics of the report for one split (a `datasets.Dataset` or a list of row dicts)."""
    meta = ds.remove_columns([c for c in MEDIA_COLUMNS if c in ds.column_names]) if hasattr(ds, "remove_columns") \
        else ds
    rows = list(decoded_rows(meta))
    movie = [r for r in rows if r["source"] == "movie"]
    gallery = [{"row": i, **{k: rows[i].get(k) for k in GALLERY_FIELDS}} for i in select_gallery(rows, gallery_per_emotion)]
    return {
        "clips": len(rows),
        "groups": {"valence": {e: valence_of(e) for e in EMOTIONS}, "arousal": {e: arousal_of(e) for e in EMOTIONS},
                   "arousal_rule": "high when the Warriner arousal norm is above the median of the eight"},
        "composition": composition(meta),
        "colour": colour_analysis(rows),
        "transitions": markov_analysis(movie, alpha=alpha, n_boot=n_boot, seed=seed),
        "phrases": phrases_by_emotion(rows, top=top_phrases),
        "gallery": gallery,
    }


def thumbnails(ds: Any, gallery: list[dict[str, Any]]) -> dict[str, bytes]:
    """GIF bytes per gallery clip id; a clip that cannot be decoded is logged, marked in its entry and skipped.

    Empty for the media-free metadata config.
    """
    out: dict[str, bytes] = {}
    if "video" not in ds.column_names:
        return out
    for entry in tqdm(gallery, desc="thumbnails", unit="clip"):
        try:
            out[entry["clip_id"]] = animated_thumbnail(ds[entry["row"]]["video"])
        except MediaError as exc:
            log.warning("gallery clip %s skipped: %s", entry["clip_id"], exc)
            entry["thumbnail_error"] = str(exc)
    return out


def format_number(value: Any) -> str:
    """How the report prints a stats value: ints as is, floats to 4 significant digits, null as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return html.escape(str(value))
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def lookup(stats: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path such as ``colour.groups.emotion.anova.hue.F`` (list indices are integers)."""
    value: Any = stats
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


class _Page:
    """Accumulates HTML; `cell` prints a stats value with its ``data-stat`` path."""

    def __init__(self, stats: Mapping[str, Any]):
        self.stats, self.parts = stats, []

    def add(self, text: str) -> None:
        """Append raw HTML."""
        self.parts.append(text)

    def num(self, path: str, tag: str = "td") -> str:
        """A cell showing the stats value at ``path`` (tagged with it, so tests can read it back)."""
        return f'<{tag} data-stat="{path}">{format_number(lookup(self.stats, path))}</{tag}>'

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.add("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        for row in rows:
            self.add("<tr>" + "".join(row) + "</tr>")
        self.add("</table>")


def _th(text: str) -> str:
    return f"<th>{html.escape(text)}</th>"


def render_html(stats: Mapping[str, Any], plots: Mapping[str, bytes], thumbs: Mapping[str, bytes],
                title: str = "EmoVid analysis") -> str:
    """The report page; numbers come from ``stats``, images are embedded as base64 data URIs."""
    p = _Page(stats)
    p.add(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
          "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
          ".gallery{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;width:170px;font-size:12px}"
          "</style></head><body>")
    p.add(f"<h1>{html.escape(title)}</h1><p>Clips analysed: {p.num('clips', 'span')}</p>")

    def plot(key: str) -> None:
        caption, _ = PLOTS[key]
        data = base64.b64encode(plots[key]).decode("ascii")
        p.add(f"<figure class='plot' style='width:auto'><img alt='{key}' data-plot='{key}' "
              f"src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>")

    p.add("<h2>Composition (Table 2)</h2>")
    keys = ("clips", "duration_mean", "duration_sd", "duration_total", "with_audio", "with_caption")
    rows = [[_th(s)] + [p.num(f"composition.per_source.{s}.{k}") for k in keys] for s in SOURCES]
    rows.append([_th("total")] + [p.num(f"composition.total.{k}") for k in keys])
    p.table(["source", "clips", "mean duration (s)", "SD (s)", "total (s)", "with audio", "with caption"], rows)
    p.table(["source"] + list(EMOTIONS),
            [[_th(s)] + [p.num(f"composition.emotions.{s}.{e}") for e in EMOTIONS] for s in SOURCES])
    plot("emotion_distribution")

    p.add("<h2>Colour versus emotion (Fig. 5)</h2>")
    for grouping, groups in stats["colour"]["groups"].items():
        base = f"colour.groups.{grouping}"
        p.add(f"<h3>By {grouping}</h3>")
        p.table([grouping, "n"] + list(ATTRIBUTES),
                [[_th(g), p.num(f"{base}.means.{g}.n")] + [p.num(f"{base}.means.{g}.{a}") for a in ATTRIBUTES]
                 for g in groups["means"]])
        p.table(["ANOVA", "F", "p", "eta²", "df between", "df within"],
                [[_th(a)] + [p.num(f"{base}.anova.{a}.{k}") for k in ("F", "p", "eta_squared", "df_between",
                                                                      "df_within")] for a in ATTRIBUTES])
    p.add("<p>Hue means are circular means; its ANOVA on degrees is indicative only.</p>")
    for attr, bins in stats["colour"]["positive_ratio"].items():
        base = f"colour.positive_ratio.{attr}"
        p.table([f"{attr} bin", "clips", "positive", "ratio"],
                [[p.num(f"{base}.{i}.{k}") for k in ("bin", "clips", "positive", "ratio")] for i in range(len(bins))])
    plot("colour_means")
    plot("positive_ratio")

    t = stats["transitions"]
    p.add("<h2>Emotion transitions across consecutive movie clips</h2>"
          f"<p>Chain rule: {html.escape(t['chain_rule'])}. Films {p.num('transitions.films', 'span')}, chains "
          f"{p.num('transitions.chains', 'span')}, transitions {p.num('transitions.transitions', 'span')}, "
          f"additive smoothing alpha {p.num('transitions.alpha', 'span')}.</p>")
    p.table(["current \\ next"] + list(EMOTIONS),
            [[_th(e)] + [p.num(f"transitions.smoothed.{i}.{j}") for j in range(len(EMOTIONS))]
             for i, e in enumerate(EMOTIONS)])
    if t["bootstrap"]:
        p.add("<p>95 % bootstrap interval (films resampled) of each entry:</p>")
        p.table(["current \\ next"] + list(EMOTIONS),
                [[_th(e)] + [f"<td>{p.num(f'transitions.bootstrap.low.{i}.{j}', 'span')}–"
                             f"{p.num(f'transitions.bootstrap.high.{i}.{j}', 'span')}</td>" for j in range(len(EMOTIONS))]
                 for i, e in enumerate(EMOTIONS)])
    p.table(["emotion", "stationary π", "P_ii", "P_ii / π"],
            [[_th(e), p.num(f"transitions.stationary.{e}"), p.num(f"transitions.self_persistence.{e}.p_ii"),
              p.num(f"transitions.self_persistence.{e}.over_stationary")] for e in EMOTIONS])
    p.table(["independence test", "G", "p", "dof"],
            [[_th(t["independence"]["test"])] + [p.num(f"transitions.independence.{k}") for k in ("G", "p", "dof")]])
    p.table(["valence mass", "within share", "within share of changes", "mean off-diag within", "mean across"],
            [[_th("transitions")] + [p.num(f"transitions.valence.{k}") for k in (
                "within_share", "within_share_of_changes", "mean_offdiag_within", "mean_offdiag_across")]])
    plot("transition_heatmap")

    p.add("<h2>Frequent caption phrases</h2>")
    p.table(["emotion", "phrases (captions containing them)"],
            [[_th(e), "<td style='text-align:left'>" + "; ".join(
                f"{html.escape(x['phrase'])} ({p.num(f'phrases.{e}.{i}.captions', 'span')})"
                for i, x in enumerate(stats["phrases"][e])) + "</td>"] for e in EMOTIONS])

    p.add("<h2>Gallery</h2><div class='gallery'>")
    for i, entry in enumerate(stats["gallery"]):
        gif = thumbs.get(entry["clip_id"])
        img = (f"<img alt='{html.escape(entry['clip_id'])}' src='data:image/gif;base64,"
               f"{base64.b64encode(gif).decode('ascii')}'>" if gif else "<p>(no thumbnail)</p>")
        p.add(f"<figure class='clip' data-clip='{html.escape(entry['clip_id'])}'>{img}<figcaption>"
              f"<b>{html.escape(entry['emotion'])}</b> · {html.escape(entry['source'])}<br>"
              f"C {p.num(f'gallery.{i}.colorfulness', 'span')} B {p.num(f'gallery.{i}.brightness', 'span')} "
              f"H {p.num(f'gallery.{i}.hue', 'span')}° · {p.num(f'gallery.{i}.duration', 'span')} s<br>"
              f"{html.escape((entry.get('caption') or '')[:120])}</figcaption></figure>")
    p.add("</div></body></html>")
    return "\n".join(p.parts)


def write_report(dataset: str, out_dir: str | Path, config: str = "default", split: str = "train",
                 **stats_kwargs: Any) -> dict[str, Path]:
    """Analyse ``split`` of ``dataset`` and write ``out_dir/stats.json`` and ``out_dir/report.html``."""
    out_dir = Path(out_dir)
    ds = load_split(dataset, config, split)
    if len(ds) == 0:
        raise ValueError(f"{dataset}: split {split!r} of config {config!r} has no clips")
    stats = build_stats(ds, **stats_kwargs)
    thumbs = thumbnails(ds, stats["gallery"])
    stats = json.loads(json.dumps({"dataset": str(dataset), "config": config, "split": split, **stats}))
    plots = {key: draw(stats) for key, (_, draw) in PLOTS.items()}
    title = f"EmoVid analysis: {Path(str(dataset)).name or dataset} ({config}/{split})"
    paths = {"stats": out_dir / "stats.json", "report": out_dir / "report.html"}
    atomic_write_text(paths["stats"], json.dumps(stats, indent=1))
    atomic_write_text(paths["report"], render_html(stats, plots, thumbs, title=title))
    log.info("analysis of %s clips written to %s and %s", stats["clips"], paths["report"], paths["stats"])
    return paths

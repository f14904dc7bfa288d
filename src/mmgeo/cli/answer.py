"""A search result for people: the answer first, as a block no terminal width can cut, then the candidates.

The block (name or place, full coordinates, place, distance from the stage-1 estimate, confidence and
every evidence path) is printed with soft wrapping, so a narrow terminal or a pipe (rich's 80 columns)
wraps its lines but never shortens them. The candidate table keeps all its columns when it fits the
width; otherwise it drops to the five that rank (#, name, coordinates, km, score), which wrap instead of
being cut with "…".
"""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from mmgeo.search.result import Candidate, SearchResult

FULL_COLUMNS = ("#", "landmark or place", "lat, lon", "km from estimate", "score", "image", "text", "prior", "best evidence")
NARROW_COLUMNS = ("#", "landmark or place", "lat, lon", "km", "score")
UNBOUNDED = 100_000


def coordinates(c: Candidate) -> str:
    return f"{c.lat:.5f}, {c.lon:.5f}"


def _unit(result: SearchResult) -> str:
    return "photos" if result.region.get("collection", "").endswith("_ground") else "tiles"


def _evidence(hit: dict) -> str:
    """A stage-2 hit's file (whole), and the day a photo was taken."""
    return f"{hit.get('source') or hit.get('key')}{', ' + hit['taken'][:10] if hit.get('taken') else ''}"


def print_result(out: Console, result: SearchResult) -> None:
    """Stage 1 and the region, then (unless abstained) the answer block and the candidate table, on ``out``."""
    est = result.estimate
    near = f" ({est['place']['label']})" if est.get("place") else ""
    region = result.region
    out.print(f"[bold]stage 1[/] ({est['source']}): {est['lat']:.4f}, {est['lon']:.4f}{near}", highlight=False, soft_wrap=True)
    out.print(f"[bold]region[/]: {region['description']} ({region['candidates_in_region']} {_unit(result)}"
              f"{', fallback used' if region['fallback_used'] else ''})", highlight=False, soft_wrap=True)
    if not result.consistency["consistent"]:
        out.print(f"[bold yellow]photos disagree[/] (consistent: false): outliers "
                  f"{', '.join(Path(p).name for p in result.consistency['outliers'])}; the answer follows "
                  f"{', '.join(Path(p).name for p in result.consistency['groups'][0])} (--split-inconsistent answers each group)",
                  highlight=False, soft_wrap=True)
    if result.abstained:
        out.print(f"[bold yellow]abstained[/]: {result.abstain_reason}", highlight=False, soft_wrap=True)
        return
    if result.best is None:
        out.print("no candidate in the store", highlight=False)
        return
    out.print()
    out.print(answer_block(result, result.best), soft_wrap=True)
    if len(result.candidates) > 1:
        out.print()
        out.print(candidate_table(result, out))


def confidence_label(result: SearchResult) -> str:
    """``0.62 (P within 25 km, calibrated; top landmark right 0.21)`` or ``uncalibrated (score 0.52, not a probability)``."""
    if result.calibration != "calibrated":
        return f"uncalibrated (score {result.confidence:.2f}, not a probability)"
    landmark = "" if result.landmark_probability is None else f"; top landmark right {result.landmark_probability:.2f}"
    return f"{result.confidence:.2f} (P within 25 km, calibrated{landmark})"


def answer_block(result: SearchResult, best: Candidate) -> Text:
    """``best`` (``result.best``) as ``label  value`` lines; nothing in it is ever shortened."""
    photos = ", ".join(Path(p).name for p in result.photos)
    rows: list[tuple[str, str]] = [("answer", best.label), ("coordinates", coordinates(best))]
    if best.place and best.place["label"] != best.label:
        rows.append(("place", best.place["label"]))
    rows += [("distance", f"{best.distance_km:.1f} km from the stage-1 estimate"),
             ("confidence", confidence_label(result))]
    for i, item in enumerate(best.evidence):
        rows.append(("evidence" if i == 0 else "", f"{_evidence(item)} ({item['collection']}, similarity {item['score']:.3f})"))
    width = max(len(k) for k, _ in rows)
    text = Text()
    text.append(f"Where was {photos} taken?\n", style="bold")
    for key, value in rows:
        text.append(f"  {key:<{width}}  ", style="bold" if key else "")
        text.append(value, style="bold green" if key == "answer" else "")
        text.append("\n")
    text.rstrip()
    return text


def candidate_table(result: SearchResult, out: Console) -> Table:
    """All columns when they fit ``out``'s width, else the five that rank, wrapping (never "…")."""
    full = _table(result, FULL_COLUMNS, box.HEAVY_HEAD)
    natural = Measurement.get(out, out.options.update(width=UNBOUNDED), full).maximum  # its width if nothing wrapped
    if natural <= out.width:
        return full
    return _table(result, NARROW_COLUMNS, box.SIMPLE_HEAD)


def _table(result: SearchResult, columns: tuple[str, ...], style: box.Box) -> Table:
    table = Table(title="candidates", box=style, title_justify="left")
    for col in columns:
        table.add_column(col, overflow="fold", no_wrap=col in ("#", "lat, lon"))
    for c in result.candidates:
        cells = {"#": str(c.rank), "landmark or place": c.label, "lat, lon": coordinates(c),
                 "km from estimate": f"{c.distance_km:.1f}", "km": f"{c.distance_km:.1f}", "score": f"{c.score:.3f}",
                 "image": f"{c.image_score:.3f}", "text": "-" if c.text_score is None else f"{c.text_score:.3f}",
                 "prior": f"{c.prior:.3f}", "best evidence": _evidence(c.evidence[0]) if c.evidence else ""}
        table.add_row(*(cells[col] for col in columns))
    return table

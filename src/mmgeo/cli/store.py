"""``mmgeo store …``: inspect, push/pull, snapshot/restore, quantize/optimize a store.

Thin commands over :mod:`mmgeo.qdrant.admin`; every option maps to a library parameter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmgeo.cli.common import MmgeoGroup, console, open_store_from, store_options
from mmgeo.cli.params import SnapshotFile, StoreLocation
from mmgeo.errors import CollectionNotFoundError, SnapshotError
from mmgeo.qdrant import Store, admin, default_store_path, open_store
from mmgeo.qdrant.admin import HnswSettings


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


collections_option = click.option(
    "--collections", default=None, metavar="A,B", help="Comma list of collections [default: all]."
)


def _size(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _indexes(indexes: dict[str, str]) -> str:
    kinds: dict[str, list[str]] = {}
    for field_name, kind in indexes.items():
        kinds.setdefault(kind, []).append(field_name)
    return "\n".join(f"{kind}: {', '.join(names)}" for kind, names in sorted(kinds.items())) or "none"


def _progress_for(progress: Progress) -> Callable[[str], admin.Progress]:
    def for_collection(name: str) -> admin.Progress:
        task = progress.add_task(name, total=None)
        return lambda done, total: progress.update(task, completed=done, total=total)

    return for_collection


def _copy(src: Store, open_target: Callable[[], Store], collections: list[str] | None, batch_size: int) -> list[admin.CopyReport]:
    """Copy after checking that the named collections exist, so a refused copy never creates the target."""
    if missing := [c for c in collections or [] if not src.has_collection(c)]:
        raise CollectionNotFoundError(f"no collection {', '.join(map(repr, missing))} at {src.location} "
                                      f"(it has: {', '.join(src.list_collections()) or 'none'})")
    with open_target() as dst, Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        reports = admin.copy_store(src, dst, collections, batch_size=batch_size, progress=_progress_for(progress))
    for r in reports:
        console.print(
            f"{r.collection}: {r.copied} points → {r.target} ({'created' if r.created else 'updated by id'}); "
            f"verified count {r.target_points}/{r.source_points} and {r.sample_checked} sampled vectors+payloads "
            f"in {r.seconds:.1f} s", highlight=False,
        )
    console.print("Copies upsert by id: run the command again to resume an interrupted copy.", style="dim")
    return reports


@click.group("store", cls=MmgeoGroup, epilog="""
\b
Examples:
  # what is in the demo store: collections, counts, indexes, the encoder that built each, a sample payload
  mmgeo store info --store demo/store
\b
  # a backup, restored into another store
  mmgeo store snapshot demo-store.tar.gz --store demo/store && mmgeo store restore demo-store.tar.gz --store restored-store
\b
  # int8 vectors (4x less RAM), with the recall change measured
  mmgeo store quantize --int8 --store demo/store
""")
def store_group() -> None:
    """Inspect, copy, snapshot and tune the vector store (embedded Qdrant Edge or a Qdrant server)."""


@store_group.command("info", epilog="""
\b
Examples:
  # every collection of the demo store
  mmgeo store info --store demo/store
\b
  # one collection, as JSON (e.g. its metadata: the encoder and weights that built it)
  mmgeo store info --store demo/store --collections mmgeo_satellite --json
\b
  # a Qdrant server's collections (not run here: needs a Qdrant server)
  mmgeo store info --qdrant-url http://localhost:6333
""")
@store_options
@collections_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys: location, backend, mmgeo_version, collections).")
def info_command(store_path: str | None, qdrant_url: str | None, api_key: str | None, collections: str | None,
                 as_json: bool) -> None:
    """Every collection: points, vectors, payload indexes, quantization, disk/RAM, metadata, a sample payload."""
    with open_store_from(store_path, qdrant_url, api_key) as store:
        info = admin.store_info(store, _csv(collections))
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    table = Table(title=f"{info['location']} ({info['backend']})")
    for col in ("collection", "points", "vectors", "payload indexes", "quantization", "disk", "RAM est.", "encoder / mmgeo"):
        table.add_column(col, overflow="fold")
    for c in info["collections"]:
        meta = c["metadata"]
        table.add_row(
            c["name"],
            f"{c['points']}" + (f"\n({c['indexed_vectors']} indexed)" if c["indexed_vectors"] else ""),
            "\n".join(f"{v['name']}: {v['dim']}-d {v['distance']}" for v in c["vectors"]),
            _indexes(c["payload_indexes"]),
            (c["quantization"] or {}).get("kind", "none"),
            _size(c["disk_bytes"]),
            _size(c["ram_estimate_bytes"]),
            "\n".join(f"{v['encoder']} ({v['weights_id']})" for v in c["vectors"])
            + f"\nH3 {meta.get('h3_resolutions')}\nmmgeo {meta.get('mmgeo_version')}",
        )
    console.print(table)
    for c in info["collections"]:
        if c["sample_payload"] is not None:
            console.print(f"[bold]{c['name']}[/] sample payload:", json.dumps(c["sample_payload"], ensure_ascii=False),
                          highlight=False, soft_wrap=True)


@store_group.command("push", epilog="""
\b
Examples:
  # the demo store to a Qdrant server, to look at it in the dashboard (not run here: needs a Qdrant server)
  mmgeo store push --store demo/store --to http://localhost:6333
\b
  # the satellite tiles only, into qdrant-client's local mode (a folder that qdrant-client opens)
  mmgeo store push --store demo/store --collections mmgeo_satellite --to qdrant-local:demo-copy
""")
@click.option("--store", "store_path", envvar="MMGEO_STORE", default=None, metavar="PATH",
              help="Source: the embedded store [env MMGEO_STORE; default: the user data dir].")
@click.option("--to", "target", required=True, type=StoreLocation(),
              help="Target: a Qdrant server URL (or a store path / qdrant-local:PATH).")
@click.option("--api-key", envvar="QDRANT_API_KEY", default=None, help="API key of the server [env QDRANT_API_KEY].")
@collections_option
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
def push_command(store_path: str | None, target: str, api_key: str | None, collections: str | None,
                 batch_size: int) -> None:
    """Copy collections (ids, vectors, payloads, indexes, metadata) to a Qdrant server, e.g. for its dashboard."""
    with open_store(store_path or default_store_path(), create=False) as src:
        _copy(src, lambda: open_store(target, api_key=api_key), _csv(collections), batch_size)
    if target.startswith(("http://", "https://")):
        console.print(f"Open the dashboard: [bold]{target.rstrip('/')}/dashboard[/]", highlight=False)


@store_group.command("pull", epilog="""
\b
Examples:
  # a server's collections into a new embedded store (not run here: needs a Qdrant server)
  mmgeo store pull --from http://localhost:6333 --store pulled-store
\b
  # a round trip through qdrant-client's local mode
  mmgeo store push --store demo/store --to qdrant-local:demo-copy
  mmgeo store pull --from qdrant-local:demo-copy --store pulled-store
""")
@click.option("--from", "source", required=True, type=StoreLocation(),
              help="Source: a Qdrant server URL (or a store path / qdrant-local:PATH).")
@click.option("--store", "store_path", envvar="MMGEO_STORE", default=None, metavar="PATH",
              help="Target: the embedded store [env MMGEO_STORE; default: the user data dir].")
@click.option("--api-key", envvar="QDRANT_API_KEY", default=None, help="API key of the server [env QDRANT_API_KEY].")
@collections_option
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1))
def pull_command(source: str, store_path: str | None, api_key: str | None, collections: str | None,
                 batch_size: int) -> None:
    """Copy collections from a Qdrant server into the embedded store."""
    with open_store(source, api_key=api_key, create=False) as src:
        _copy(src, lambda: open_store(store_path or default_store_path()), _csv(collections), batch_size)


@store_group.command("snapshot", epilog="""
\b
Examples:
  # the whole demo store, as one checksummed .tar.gz
  mmgeo store snapshot demo-store.tar.gz --store demo/store
\b
  # only the text collection
  mmgeo store snapshot texts.tar.gz --store demo/store --collections mmgeo_text
""")
@click.argument("path", type=SnapshotFile())
@store_options
@collections_option
def snapshot_command(path: Path, store_path: str | None, qdrant_url: str | None, api_key: str | None,
                     collections: str | None) -> None:
    """Write a consistent, checksummed snapshot of the store to PATH: gzip-compressed if it is named .tar.gz or
    .tgz, an uncompressed tar if .tar (restore reads either, and older gzip snapshots named .tar)."""
    with open_store_from(store_path, qdrant_url, api_key) as store:
        manifest = admin.create_snapshot(store, path, collections=_csv(collections))
    counts = ", ".join(f"{n} ({c['points']} points)" for n, c in manifest["collections"].items())
    console.print(f"snapshot {path} ({_size(path.stat().st_size)}, {manifest['kind']}): {counts}", highlight=False)


@store_group.command("restore", epilog="""
\b
Examples:
  # a snapshot of the demo store, restored into a new store
  mmgeo store snapshot demo-store.tar.gz --store demo/store
  mmgeo store restore demo-store.tar.gz --store restored-store
\b
  # one collection of it back over the demo store's own (same encoder only)
  mmgeo store snapshot demo-store.tar.gz --store demo/store
  mmgeo store restore demo-store.tar.gz --store demo/store --collections mmgeo_text --overwrite
""")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@store_options
@collections_option
@click.option("--overwrite", is_flag=True, help="Replace collections that exist (same encoder only).")
def restore_command(path: Path, store_path: str | None, qdrant_url: str | None, api_key: str | None,
                    collections: str | None, overwrite: bool) -> None:
    """Restore a snapshot into the store (verified before anything is written)."""
    available = admin.verify_snapshot(path)["collections"]  # checked whole before a store is opened or made
    if missing := [c for c in _csv(collections) or [] if c not in available]:
        raise SnapshotError(f"snapshot {path} has no collection {', '.join(map(repr, missing))} (it has: {', '.join(available)})")
    with open_store_from(store_path, qdrant_url, api_key, create=True) as store:
        manifest = admin.restore_snapshot(path, store, collections=_csv(collections), overwrite=overwrite)
        names = _csv(collections) or list(manifest["collections"])
        console.print(
            f"restored {', '.join(f'{n} ({store.count(n)} points)' for n in names)} into {store.location} "
            f"(snapshot of mmgeo {manifest['mmgeo_version']}, {manifest['created']})", highlight=False,
        )


def _report_table(reports: list[admin.QuantizeReport], title: str) -> Table:
    table = Table(title=title)
    for col in ("collection", "quantization", "RAM est.", "disk", "indexed", "recall@k"):
        table.add_column(col)
    for r in reports:
        recall = "n/a" if r.recall is None else f"{r.recall:.3f}"
        if r.recall_unquantized is not None and r.recall is not None:
            recall = f"{r.recall_unquantized:.3f} → {r.recall:.3f} ({r.recall - r.recall_unquantized:+.3f})"
        table.add_row(
            r.collection,
            f"{r.before.quantization or 'none'} → {r.after.quantization or 'none'}",
            f"{_size(r.before.ram_estimate_bytes)} → {_size(r.after.ram_estimate_bytes)}",
            f"{_size(r.before.disk_bytes)} → {_size(r.after.disk_bytes)}",
            f"{r.before.indexed_vectors} → {r.after.indexed_vectors}",
            f"{recall} @{r.limit}, {r.queries} queries",
        )
    return table


def _emit(reports: list[admin.QuantizeReport], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
        return
    console.print(_report_table(reports, title))
    for r in reports:  # how recall was measured, and the plan per region size
        if r.measured:
            console.print(f"{r.collection}: recall on {r.measured}", highlight=False)
        for note in r.notes:
            console.print(f"  {note}", highlight=False)


@store_group.command("quantize", epilog="""
\b
Examples:
  # int8 with rescoring: RAM and disk before/after, recall@10 against exact search
  mmgeo store quantize --int8 --store demo/store
\b
  # binary, one collection, the report as JSON
  mmgeo store quantize --binary --oversampling 8 --collections mmgeo_satellite --store demo/store --json
\b
  # a store whose regions hold most of it, with near-tie neighbours (a city slice of 1024-d tiles): TurboQuant
  # 4-bit codes and no graph, so that every search scans the codes and rescores the best; then the plan
  mmgeo store quantize --turbo --m 0 --store demo/store && mmgeo store optimize --m 0 --store demo/store
""")
@store_options
@click.option("--int8", "kind", flag_value="int8", help="Scalar int8 quantization (4× less RAM for vectors).")
@click.option("--binary", "kind", flag_value="binary", help="Binary quantization (32× smaller; needs oversampling).")
@click.option("--turbo", "kind", flag_value="turbo",
              help="TurboQuant, 4 bits per dimension after a random rotation (8× smaller; scores close to int8's).")
@click.option("--turbo2", "kind", flag_value="turbo2",
              help="TurboQuant at 2 bits per dimension (16× smaller, twice as fast to scan; needs oversampling 16).")
@click.option("--rescore/--no-rescore", default=True, show_default=True,
              help="Rescore candidates with the original vectors (search-time; recorded in the metadata).")
@click.option("--oversampling", type=click.FloatRange(1.0), default=None, help="Candidates per result before rescoring [default: 2 for int8 and turbo, 8 for binary, 16 for turbo2].")
@click.option("--m", "m", default=HnswSettings.m, show_default=True, type=click.IntRange(0, 128),
              help="HNSW graph degree of the index built with it (0: no graph; give mmgeo store optimize the same).")
@collections_option
@click.option("--queries", default=100, show_default=True, type=click.IntRange(1), help="Real-like recall queries (ground photos, else noisy stored vectors).")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def quantize_command(store_path: str | None, qdrant_url: str | None, api_key: str | None, kind: str | None,
                     rescore: bool, oversampling: float | None, m: int, collections: str | None, queries: int,
                     as_json: bool) -> None:
    """Quantize vectors and build the HNSW index; report RAM/disk before/after and the recall change."""
    if kind is None:
        raise click.UsageError("give --int8, --binary, --turbo or --turbo2")
    with open_store_from(store_path, qdrant_url, api_key) as store:
        reports = admin.quantize(store, kind, collections=_csv(collections), rescore=rescore, oversampling=oversampling,  # type: ignore[arg-type]
                               queries=queries, hnsw=HnswSettings(m=m))
    _emit(reports, as_json, f"{kind} quantization (recall: unquantized HNSW → quantized, vs exact search)")


@store_group.command("optimize", epilog="""
\b
Examples:
  # merge segments and build the HNSW graph of every collection of the demo store
  mmgeo store optimize --store demo/store
\b
  # one collection, the report as JSON
  mmgeo store optimize --store demo/store --collections mmgeo_ground --json

  # a dense store (regions of ~100,000 tiles): int8 first, so that the graph scores int8 vectors and
  # rescores twice the hits it returns; then the graph and its plan
  mmgeo store quantize --int8 --store demo/store && mmgeo store optimize --store demo/store
""")
@store_options
@collections_option
@click.option("--m", "m", default=HnswSettings.m, show_default=True, type=click.IntRange(0, 128),
              help="HNSW graph degree (0: no graph, every non-exact search scans the quantized vectors).")
@click.option("--ef-construct", default=HnswSettings.ef_construct, show_default=True, type=click.IntRange(4, 4096),
              help="HNSW build beam width.")
@click.option("--payload-m", default=None, type=click.IntRange(0, 128),
              help="Degree of the extra links within each H3 cell / geohash block, for geo-filtered search [default: --m; 0: none].")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as JSON.")
def optimize_command(store_path: str | None, qdrant_url: str | None, api_key: str | None, collections: str | None,
                     m: int, ef_construct: int, payload_m: int | None, as_json: bool) -> None:
    """Build the HNSW index (keeping any quantization), measure it on real-like queries, record the search plan.

    Per band of region size, searches use exact scoring or the graph setting (ef; ACORN on selective filters
    only, or on every filter) measured to keep recall@10 ≥ 0.99, whichever was faster. On a store quantized
    first (mmgeo store quantize --int8) the graph scores the int8 vectors and rescores the best with the
    originals, and the plan is measured that way: on a dense 200K-tile city store its plan matched the float
    store's recall and speed with 4x less RAM for vectors, built in half the time (benchmarks/results/dense-region.md)."""
    with open_store_from(store_path, qdrant_url, api_key) as store:
        reports = admin.optimize(store, collections=_csv(collections),
                                 hnsw=HnswSettings(m=m, ef_construct=ef_construct, payload_m=payload_m))
    _emit(reports, as_json, "optimize (recall: the recorded search plan vs exact search)")


@store_group.command("gallery", epilog="""
\b
Examples:
  # the demo's index places as the gallery
  mmgeo store gallery --gps-gallery demo/world/index/mml_index_satellite.csv --store demo/store
\b
  # GeoCLIP's own 100K gallery (not run here: embeds 100K locations, minutes on 2 cores)
  mmgeo store gallery --store demo/store
""")
@click.option("--gps-gallery", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV/Parquet with lat, lon [default: GeoCLIP's 100K gallery].")
@click.option("--recreate", is_flag=True, help="Drop mmgeo_gallery first.")
@store_options
def gallery_command(gps_gallery: Path | None, recreate: bool, store_path: str | None, qdrant_url: str | None,
                    api_key: str | None) -> None:
    """Store a GeoCLIP GPS gallery with its location embeddings as the mmgeo_gallery collection."""
    from mmgeo.encoders import GpsGallery, create_encoder
    from mmgeo.qdrant.gallery import store_gps_gallery
    from mmgeo.search.factory import load_gps_gallery

    gallery = load_gps_gallery(gps_gallery) if gps_gallery else GpsGallery.geoclip_100k()
    geoclip = create_encoder("geoclip-location")
    store = open_store_from(store_path, qdrant_url, api_key, create=True)
    try:
        with Progress(console=console) as bar:
            task = bar.add_task(f"gallery {gallery.name}", total=len(gallery.coordinates))
            name = store_gps_gallery(store, geoclip, gallery, recreate=recreate, on_batch=lambda n: bar.advance(task, n))
        console.print(f"{name}: {store.count(name):,} points of gallery {gallery.name!r} "
                      f"({'may hold query locations' if gallery.may_leak else 'holds no query locations'})", highlight=False)
    finally:
        store.close()

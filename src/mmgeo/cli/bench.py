"""``mmgeo-bench`` (= ``mmgeo bench``): the stage-2 benchmark, written as JSON + Markdown."""

from __future__ import annotations

import math
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mmgeo.cli.common import MmgeoCommand, console
from mmgeo.cli.params import FiniteFloat, OutputDir, ServerUrl


def _numbers(kind: type, allow_inf: bool = False):
    def parse(ctx, param, value: str | None):
        if value is None:
            return None
        try:
            return tuple(math.inf if allow_inf and v.strip().lower() in ("inf", "∞") else kind(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"expected comma-separated {'km (or inf)' if allow_inf else 'integers'}, got {value!r}") from None
    return parse


EXAMPLES = """
\b
Examples:
  # a first look: 2K tiles, 20 queries per radius, no server (not run here: half a minute of CPU, most of it the
  # stage-1 simulation at MMLandmarks scale; tests/test_bench.py runs a smaller world through the same code)
  mmgeo-bench --quick --sizes 2000 --queries 20 --no-docker --out bench-small
\b
  # the README's quick run: 2K and 10K tiles, 100 queries (not run here: 2 minutes on 2 cores)
  mmgeo-bench --quick
\b
  # the committed run at MMLandmarks scale with the 18,688-query sweep (not run here: about 15 minutes)
  mmgeo-bench --sizes 10000,101302 --out benchmarks/results
\b
  # also a Qdrant server, or a 3-node cluster sharded by H3 r1 cell (not run here: needs a Qdrant server)
  mmgeo-bench --quick --qdrant-url http://localhost:6333
  mmgeo-bench --quick --qdrant-url http://localhost:6333 --shard-resolution 1   # docker-compose.cluster.yml
"""


@click.command("bench", cls=MmgeoCommand, epilog=EXAMPLES)
@click.option("--quick", is_flag=True, help="Small run (< 2 min on 2 cores): 2K and 10K tiles, 100 queries, no sweep.")
@click.option("--sizes", callback=_numbers(int), metavar="N,N,...",
              help="Tile counts to benchmark [default: 10000,101302; quick: 2000,10000]. 1000000 takes ~4 GB of vectors.")
@click.option("--queries", "n_queries", type=click.IntRange(1), default=None, help="Queries per size and radius [default: 1000; quick: 100].")
@click.option("--radii", "radii_km", callback=_numbers(float, allow_inf=True), metavar="KM,...",
              help="Stage-2 radii in km, inf for none [default: 25,500,inf].")
@click.option("--qdrant-url", envvar="QDRANT_URL", default=None, type=ServerUrl(),
              help="Also benchmark this Qdrant server [env QDRANT_URL]; else a container from docker-compose.yml's image if a Docker engine runs.")
@click.option("--api-key", envvar="QDRANT_API_KEY", default=None, help="Qdrant API key [env QDRANT_API_KEY].")
@click.option("--shard-resolution", type=click.IntRange(0, 4), default=None,
              help="Shard the server collection by the H3 cell at this resolution and report the shards each query touched.")
@click.option("--no-docker", "no_docker", is_flag=True, help="Do not try to start a Qdrant container.")
@click.option("--sweep/--no-sweep", default=None, help="Time the 18,688-query stage-2 sweep on the 101,302-tile world [default: on, off with --quick].")
@click.option("--ref-budget", "ref_budget_s", type=FiniteFloat(0, min_open=True), default=None, help="Seconds of reference-loop timing per size and radius [default: 15].")
@click.option("--seed", type=int, default=None, help="World and query seed [default: 0].")
@click.option("--workdir", type=click.Path(exists=True, file_okay=False, writable=True), default=None, help="Where the temporary stores go [default: the system temp dir].")
@click.option("--out", "out_dir", type=OutputDir(), default=None,
              help="Output folder [default: benchmarks/results, or benchmarks/results/quick with --quick].")
def bench_command(quick: bool, sizes, n_queries, radii_km, qdrant_url, api_key, shard_resolution, no_docker, sweep, ref_budget_s, seed,
                  workdir, out_dir: Path | None) -> None:
    """Benchmark stage 2 (geo-filtered vector search) as the product runs it: Geolocator.rank and rank_many beside
    the bare engine (Qdrant Edge plain, int8, HNSW), qdrant-client, a server, numpy and the reference's Python loop,
    on a synthetic MMLandmarks-like world; plus the 18,688-query sweep and narrowing statistics at MMLandmarks scale.
    """
    from mmgeo.evaluation.bench import BenchConfig, run_benchmark, write_outputs

    overrides = dict(sizes=sizes, n_queries=n_queries, radii_km=radii_km, qdrant_url=qdrant_url, api_key=api_key,
                     sweep=sweep, ref_budget_s=ref_budget_s, seed=seed, workdir=workdir,
                     shard_resolution=shard_resolution)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if no_docker:
        overrides["use_docker"] = False
    try:
        config = BenchConfig.quick_config(**overrides) if quick else BenchConfig(**overrides)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    out_dir = out_dir or Path("benchmarks/results/quick" if quick else "benchmarks/results")
    columns = (SpinnerColumn(), TextColumn("[progress.description]{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("starting", total=None)

        def step(message: str) -> None:
            progress.update(task, description=message)
            progress.console.print(f"[dim]{progress.tasks[0].elapsed or 0:7.1f}s[/] {escape(message)}", highlight=False)

        results = run_benchmark(config, progress=step)
        progress.update(task, description=f"done in {results['wall_s']:.0f} s")
    paths = write_outputs(results, out_dir)
    for note in results["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    click.echo(f"results: {paths['json']} and {paths['md']}")

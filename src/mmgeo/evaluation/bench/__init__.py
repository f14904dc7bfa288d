"""mmgeo-bench: how fast and how exact is stage 2 (geo-filtered vector search), as the product runs it?

* :mod:`~mmgeo.evaluation.bench.world` — a synthetic MMLandmarks-like world and GeoCLIP-sized stage-1 errors;
* :mod:`~mmgeo.evaluation.bench.baselines` — exact numpy and the reference system's Python loop;
* :mod:`~mmgeo.evaluation.bench.engine` — benchmark collections and the bare engine, timed;
* :mod:`~mmgeo.evaluation.bench.product` — :meth:`Geolocator.rank` / :meth:`Geolocator.rank_many` on them;
* :mod:`~mmgeo.evaluation.bench.docker` — a throw-away Qdrant server;
* :mod:`~mmgeo.evaluation.bench.run` — one run (:func:`run_benchmark`), the 18,688-query sweep, the simulator;
* :mod:`~mmgeo.evaluation.bench.report` — JSON and Markdown (:func:`write_outputs`).

Timings depend on the machine, which the results record (cores, model, load average).
"""

from mmgeo.evaluation.bench.baselines import (
    numpy_candidates,
    numpy_search,
    recall_vs_exact,
    reference_candidates,
    reference_search,
)
from mmgeo.evaluation.bench.docker import docker_qdrant
from mmgeo.evaluation.bench.engine import region_filter, shards_touched
from mmgeo.evaluation.bench.report import format_report, machine_info, versions, write_outputs
from mmgeo.evaluation.bench.run import BenchConfig, run_benchmark
from mmgeo.evaluation.bench.world import (
    GEOCLIP_ERROR_CDF,
    Queries,
    World,
    WorldSpec,
    candidate_counts,
    make_queries,
    make_world,
    narrowing_by_radius,
    sample_stage1_errors,
    stage1_error_cdf,
)

__all__ = [
    "GEOCLIP_ERROR_CDF", "BenchConfig", "Queries", "World", "WorldSpec", "candidate_counts", "docker_qdrant",
    "format_report", "machine_info", "make_queries", "make_world", "narrowing_by_radius", "numpy_candidates",
    "numpy_search", "recall_vs_exact", "reference_candidates", "reference_search", "region_filter", "run_benchmark",
    "sample_stage1_errors", "shards_touched", "stage1_error_cdf", "versions", "write_outputs",
]

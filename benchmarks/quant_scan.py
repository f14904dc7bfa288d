"""Bare engine beside ``dense_region.py``: which quantization lets a scan without a graph keep recall@10 ≥ 0.99 on a
store whose nearest neighbours are near-ties (the 475K New York slice of the 10M world, 1024-d), and how fast.

    nice -n 10 python benchmarks/quant_scan.py build --from /tmp/ny/store --to /tmp/ny-tq2/store --kind turbo2
    flock /tmp/bench.lock python benchmarks/quant_scan.py measure --store /tmp/ny-tq2/store --label "TurboQuant 2-bit"

``build`` copies a store and reloads its collection with the engine's quantization ``--kind`` and no graph (m 0),
so every non-exact search scans the codes and rescores the best ``limit × oversampling`` with the float vectors
(the product offers int8, binary and TurboQuant 4-bit: ``mmgeo store quantize``; this sweeps the engine's other
encodings too). ``measure`` takes the store's own probes (``probes.probe_queries``: stored vectors plus noise) and
reports, per oversampling, recall@10 and p50 of the unfiltered scan against unfiltered exact search, and of a wide
search (``mmgeo.qdrant.wide``: the collection's top ``10 × widen`` unfiltered, kept in the 25 km region) against
the filtered exact search. Appends to benchmarks/results/quant-scan.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from mmgeo.qdrant import EXACT, EdgeStore, SearchParams
from mmgeo.qdrant.admin.probes import probe_queries, region_filters
from mmgeo.qdrant.schema import collection_name
from mmgeo.qdrant.wide import Widened, search_widened

COLLECTION = collection_name("satellite")
KINDS: dict[str, Any] = {
    "int8": lambda: qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, quantile=0.99, always_ram=True),
    "binary1": lambda: qe.BinaryQuantizationConfig(always_ram=True, encoding=qe.BinaryQuantizationEncoding.OneBit),
    "binary1.5": lambda: qe.BinaryQuantizationConfig(always_ram=True, encoding=qe.BinaryQuantizationEncoding.OneAndHalfBits),
    "binary2": lambda: qe.BinaryQuantizationConfig(always_ram=True, encoding=qe.BinaryQuantizationEncoding.TwoBits),
    "binary1-query8": lambda: qe.BinaryQuantizationConfig(always_ram=True, encoding=qe.BinaryQuantizationEncoding.OneBit,
                                                          query_encoding=qe.BinaryQuantizationQueryEncoding.Scalar8Bits),
    "binary2-query8": lambda: qe.BinaryQuantizationConfig(always_ram=True, encoding=qe.BinaryQuantizationEncoding.TwoBits,
                                                          query_encoding=qe.BinaryQuantizationQueryEncoding.Scalar8Bits),
    "turbo1": lambda: qe.TurboQuantQuantizationConfig(always_ram=True, bits=qe.TurboQuantBitSize.Bits1),
    "turbo2": lambda: qe.TurboQuantQuantizationConfig(always_ram=True, bits=qe.TurboQuantBitSize.Bits2),
    "turbo4": lambda: qe.TurboQuantQuantizationConfig(always_ram=True, bits=qe.TurboQuantBitSize.Bits4),
}


def build(args: argparse.Namespace) -> None:
    """Copy the store (sparse), reload its collection with ``--kind`` and no graph, optimize."""
    args.to.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--sparse=always", str(args.src), str(args.to)], check=True)
    shard = args.to / COLLECTION / "shard"
    persisted = json.loads((shard / "edge_config.json").read_text())["vectors"]
    vectors = {n: qe.EdgeVectorParams(size=int(p["size"]), distance=qe.Distance.Cosine, on_disk=True) for n, p in persisted.items()}
    config = qe.EdgeConfig(vectors=vectors, quantization_config=KINDS[args.kind](),
                           hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000, payload_m=0),
                           optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1))
    t = time.perf_counter()
    edge = qe.EdgeShard.load(str(shard), config)
    edge.optimize()
    edge.flush()
    edge.close()
    print(json.dumps({"kind": args.kind, "seconds": round(time.perf_counter() - t, 1)}), flush=True)
    shutil.rmtree(shard / "temp_segments", ignore_errors=True)


def measure(args: argparse.Namespace) -> None:
    store = EdgeStore(args.store)
    probes = probe_queries(store, COLLECTION, using="image", queries=args.queries)
    vectors = probes.vectors[probes.dense]
    region = region_filters(probes, args.radius)[:len(vectors)]

    def run(params: SearchParams | Widened, filters: list[Any]) -> tuple[list[set[str]], float]:
        ids, ms = [], []
        for v, f in zip(vectors, filters):
            t = time.perf_counter()
            if isinstance(params, Widened):
                [hits] = search_widened(store, COLLECTION, v[None, :], [f], using="image", limit=10, how=params, fields=("key",))
            else:
                hits = store.search(COLLECTION, v, using="image", limit=10, flt=f, params=params, fields=("key",))
            ms.append((time.perf_counter() - t) * 1e3)
            ids.append({h.id for h in hits})
        return ids, float(np.median(ms))

    def recall(got: list[set[str]], want: list[set[str]]) -> float:
        return round(float(np.mean([len(a & e) / len(e) for a, e in zip(got, want) if e])), 4)

    load0 = os.getloadavg()[0]
    run(SearchParams(oversampling=1.0), [None] * len(vectors))  # the codes and vectors read once
    everything, exact_ms = run(EXACT, [None] * len(vectors))
    inside, exact_region_ms = run(EXACT, region)
    rows = []
    for over in args.oversampling:
        ids, ms = run(SearchParams(oversampling=over), [None] * len(vectors))
        rows.append({"search": "scan, unfiltered", "oversampling": over, "recall@10": recall(ids, everything), "p50_ms": round(ms, 2)})
        for widen in args.widen:
            ids, ms = run(Widened(SearchParams(oversampling=over), widen), region)
            rows.append({"search": f"wide x{widen}, {args.radius:g} km", "oversampling": over, "recall@10": recall(ids, inside),
                         "p50_ms": round(ms, 2)})
        print(json.dumps(rows[-1 - len(args.widen):]), flush=True)
    entry = {"label": args.label, "store": str(args.store), "tiles": store.count(COLLECTION), "queries": len(vectors),
             "quantization": json.loads((args.store / COLLECTION / "shard" / "edge_config.json").read_text()).get("quantization_config"),
             "exact_unfiltered_p50_ms": round(exact_ms, 1), "exact_region_p50_ms": round(exact_region_ms, 1),
             "load_avg_1m_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)], "rows": rows}
    store.close()
    path = args.out / "quant-scan.json"
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    runs = [r for r in runs if r["label"] != args.label] + [entry]
    path.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    lines = ["# A scan without a graph, per quantization: the 475K New York slice (1024-d, near-tie neighbours)", "",
             "Bare engine (`EdgeStore.search`, one query at a time) on copies of the slice reloaded with each quantization and "
             "no HNSW graph (`benchmarks/quant_scan.py`); queries: the store's probes (stored vectors plus noise of norm 1). "
             "recall@10 against exact search, unfiltered or in the 25 km region; a wide search keeps the collection's "
             "unfiltered top 10 × widen in the region. Load: 1-minute load average on 2 shared cores.", "",
             "| quantization | search | oversampling | recall@10 | p50 ms | exact p50 ms | load |", "|---|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['label']} | {x['search']} | {x['oversampling']:g} | {x['recall@10']} | {x['p50_ms']} | "
              f"{r['exact_unfiltered_p50_ms'] if 'unfiltered' in x['search'] else r['exact_region_p50_ms']} | "
              f"{r['load_avg_1m_before_after'][0]} → {r['load_avg_1m_before_after'][1]} |" for r in runs for x in r["rows"]]
    (args.out / "quant-scan.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    b = sub.add_parser("build", help="copy a store, reload it with a quantization and no graph")
    b.add_argument("--from", dest="src", type=Path, required=True, help="the store directory to copy")
    b.add_argument("--to", type=Path, required=True, help="the new store directory")
    b.add_argument("--kind", choices=sorted(KINDS), required=True)
    m = sub.add_parser("measure", help="recall@10 and p50 of the scan and the wide scan per oversampling")
    m.add_argument("--store", type=Path, required=True)
    m.add_argument("--label", required=True)
    m.add_argument("--queries", type=int, default=60)
    m.add_argument("--radius", type=float, default=25.0)
    m.add_argument("--oversampling", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    m.add_argument("--widen", type=int, nargs="+", default=[2, 10])
    m.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    {"build": build, "measure": measure}[args.step](args)


if __name__ == "__main__":
    main()

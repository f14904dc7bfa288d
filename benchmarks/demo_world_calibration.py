"""Calibrate the demo world's difficulty: stage-1 error of kNN on unseen query landmarks vs GeoCLIP's.

For each parameter setting and seed: write the world, embed its ground photos with the demo's encoder
(EfficientNet-Lite0, as ``mmgeo-ingest`` does), place every query photo at its nearest geotagged
gallery photo (train landmarks' photos + index street photos, cosine; the top hypothesis of
``--stage1 knn``) and print acc@25/200/750/2500 km next to GeoCLIP's published index-only curve.
Only stage 1 is measured: the world is never tuned on stage-2 numbers.

    PYTHONPATH=src python benchmarks/demo_world_calibration.py --out /tmp/cal --seeds 0,1 \
        --set photo_noise=0.5 --set scale_weights=1,0.6,0.5
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from mmgeo.encoders.registry import create_encoder
from mmgeo.evaluation.metrics import geolocation_accuracy
from mmgeo.ingest.demo_world import WorldParams, make_demo_world
from mmgeo.ingest.mmlandmarks import MMLandmarks

GEOCLIP_INDEX_ONLY = {"acc@25km": 0.2879, "acc@200km": 0.4448, "acc@750km": 0.6907, "acc@2500km": 0.9107}
"""GeoCLIP zero-shot on MMLandmarks' 18,688 query photos, index-only gallery (shared/REFERENCE.md)."""


def _parse(assignments: list[str]) -> WorldParams:
    names = {f.name for f in fields(WorldParams)}
    changes = {}
    for a in assignments:
        key, value = a.split("=", 1)
        if key not in names:
            raise SystemExit(f"unknown parameter {key!r}; valid: {sorted(names)}")
        parsed = ast.literal_eval(value)
        changes[key] = tuple(parsed) if isinstance(parsed, list | tuple) else parsed
    return replace(WorldParams(), **changes)


def stage1_curve(root: Path, encoder) -> dict[str, float]:
    """kNN stage 1's top hypothesis for each query photo of ``root``, scored like ``mmgeo-eval``."""
    gallery = list(MMLandmarks(root, ["train", "index"], ["ground"]).iter_records([]))
    queries = list(MMLandmarks(root, ["query"], ["ground"]).iter_records([]))
    g = encoder.encode_images([r.path for r in gallery])
    q = encoder.encode_images([r.path for r in queries])
    np.savez(root / "stage1-embeddings.npz", gallery=g, queries=q,
             gallery_latlon=[(r.lat, r.lon) for r in gallery], query_latlon=[(r.lat, r.lon) for r in queries],
             gallery_split=[r.split for r in gallery])
    nearest = np.argmax(q @ g.T, axis=1)
    acc = geolocation_accuracy([gallery[i].lat for i in nearest], [gallery[i].lon for i in nearest],
                               [r.lat for r in queries], [r.lon for r in queries])
    from_landmarks = float(np.mean([gallery[i].split == "train" for i in nearest]))
    return {k: acc[k] for k in GEOCLIP_INDEX_ONLY} | {"n_queries": len(queries), "n_gallery": len(gallery),
                                                     "nn_is_landmark_photo": from_landmarks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", action="append", default=[], help="WorldParams field=value (Python literal)")
    args = ap.parse_args()
    params = _parse(args.set)
    encoder = create_encoder("efficientnet_lite0")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        root = make_demo_world(args.out / f"seed{seed}", params, seed=seed)
        t1 = time.perf_counter()
        rows.append(stage1_curve(root, encoder))
        print(json.dumps({"seed": seed, **rows[-1], "world_s": round(t1 - t0, 1),
                          "encode_s": round(time.perf_counter() - t1, 1)}), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in GEOCLIP_INDEX_ONLY}
    print(json.dumps({"params": repr(params), "mean": mean,
                      "minus_geoclip": {k: round(mean[k] - v, 4) for k, v in GEOCLIP_INDEX_ONLY.items()}}))


if __name__ == "__main__":
    main()

"""Check ``mmgeo-eval --protocol reference`` against an independent recomputation of the reference's scoring.

The reference system scores its hybrid pipeline with ``_rerank_and_score`` in
``src/mmgeo/inference.py`` of nickiliak/Multimodal-Geo-Spatial-Learning (haversine and
``accuracy_at_thresholds`` from its ``geolocalizations/geoclip/evaluate.py``). This file re-states
those functions in plain numpy, step for step, and shares no code with ``mmgeo.evaluation``:

* the gallery (tile vectors, landmark ids, locations) is read straight from the store's
  satellite collection; an unlabelled tile has landmark id -1, as in the reference;
* the truth is read from the dataset's CSVs (``query/mml_query.csv`` coordinates,
  ``query/mml_query_ground.csv`` photos), as the reference reads it;
* only the inputs the reference's function is *given* come from mmgeo: each query's image
  embedding (one photo, or the mean of a landmark's photos) and its stage-1 estimate (rough GPS).

Two departures, both where the reference's own result is arbitrary (``fallback = fail``): the
reference masks tiles outside the disk to the dtype's minimum and takes top-K anyway, so when the
disk holds fewer than K tiles, arbitrary outside tiles fill the list, and an empty disk gets an
arbitrary top-1 location. Here masked tiles never enter the list and an empty disk is located at
its stage-1 estimate (mmgeo's documented rule).

Usage (after ``mmgeo-eval DATASET --store STORE --protocol reference --out OUT``)::

    python benchmarks/reference_check.py DATASET --store STORE --stage1 knn --results OUT/results.json

Exit status 0 when every metric of every reference row agrees to ``--tol`` (1e-9), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmgeo.search.factory import DEFAULT_STAGE1, STAGE1, build_geolocator

REFERENCE_EARTH_RADIUS_KM = 6371.0
RECALL_KS = (1, 5, 10, 25)
MAP_K = 1000
DIST_THRESHOLDS_KM = (1, 10, 25, 200, 750, 2500)


# -- the reference's functions, restated --------------------------------------------------------------------

def haversine(lat1, lon1, lat2, lon2, radius_km: float = REFERENCE_EARTH_RADIUS_KM) -> np.ndarray:
    """Paired great-circle distances in km (the reference's ``haversine``)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * radius_km * np.arcsin(np.sqrt(a))


def haversine_matrix_km(a_lat, a_lon, b_lat, b_lon, radius_km: float = REFERENCE_EARTH_RADIUS_KM) -> np.ndarray:
    """All-pairs great-circle distances (Q, I) in km (the reference's ``_haversine_matrix_km``)."""
    a_lat_r, a_lon_r = np.radians(a_lat)[:, None], np.radians(a_lon)[:, None]
    b_lat_r, b_lon_r = np.radians(b_lat)[None, :], np.radians(b_lon)[None, :]
    h = np.sin((b_lat_r - a_lat_r) / 2) ** 2 + np.cos(a_lat_r) * np.cos(b_lat_r) * np.sin((b_lon_r - a_lon_r) / 2) ** 2
    return 2 * radius_km * np.arcsin(np.sqrt(h))


@dataclass
class Gallery:
    coords: np.ndarray        # (N, 2) lat, lon
    landmark_ids: np.ndarray  # (N,) int64, -1 for unlabelled tiles
    embeds: np.ndarray        # (N, D) float64, L2-normalised


def rerank_and_score(query_embeds: np.ndarray, query_lids: np.ndarray, true_coords: np.ndarray, rough_gps: np.ndarray,
                     gallery: Gallery, radius_km: float, fallback: str, *, recall_ks=RECALL_KS, map_k: int = MAP_K,
                     dist_thresholds=DIST_THRESHOLDS_KM, earth_radius_km: float = REFERENCE_EARTH_RADIUS_KM) -> dict:
    """The reference's ``_rerank_and_score`` for one radius and fallback (``fail`` or ``full``), in numpy.

    Extras it does not report, computed the same way: R@25 and R@1 % (K = 1 % of the gallery,
    halves up). Keys are named like mmgeo's results columns.
    """
    n_q, n_i = len(query_embeds), len(gallery.embeds)
    effective_map_k = min(map_k, n_i)
    k_percent = max(1, math.floor(n_i / 100 + 0.5))
    top_k_needed = max(max(recall_ks), effective_map_k, k_percent)
    unique_idx, counts = np.unique(gallery.landmark_ids, return_counts=True)
    lid_to_count = dict(zip(unique_idx.tolist(), counts.tolist()))

    d_km = haversine_matrix_km(rough_gps[:, 0], rough_gps[:, 1], gallery.coords[:, 0], gallery.coords[:, 1],
                               earth_radius_km)
    mask = d_km <= radius_km
    per_q_candidates = mask.sum(axis=1)
    empty_rows = per_q_candidates == 0
    if fallback == "full":
        mask[empty_rows, :] = True
    sims = query_embeds @ gallery.embeds.T
    sims[~mask] = -np.inf
    order = np.argsort(-sims, axis=1, kind="stable")[:, :top_k_needed]

    hits = {k: 0 for k in (*recall_ks, "1%")}
    ap_sum, ap_count = 0.0, 0
    pred = np.zeros((n_q, 2))
    for i in range(n_q):
        topk = order[i][np.isfinite(sims[i, order[i]])]  # departure: masked tiles never fill the list
        q_lid = int(query_lids[i])
        relevance = gallery.landmark_ids[topk] == q_lid
        pred[i] = gallery.coords[topk[0]] if topk.size else rough_gps[i]  # departure: empty disk → stage 1
        for k in recall_ks:
            hits[k] += bool(relevance[:k].any())
        hits["1%"] += bool(relevance[:k_percent].any())
        total_rel = lid_to_count.get(q_lid, 0)
        if total_rel == 0:
            continue
        rel_top = np.zeros(effective_map_k)
        rel_top[: min(relevance.size, effective_map_k)] = relevance[:effective_map_k]
        if rel_top.sum() == 0:
            ap_count += 1
            continue
        p_at_r = np.cumsum(rel_top) / np.arange(1, effective_map_k + 1, dtype=np.float64)
        ap_sum += (p_at_r * rel_top).sum() / min(total_rel, effective_map_k)
        ap_count += 1

    dist = haversine(pred[:, 0], pred[:, 1], true_coords[:, 0], true_coords[:, 1], earth_radius_km)
    out = {f"R@{k}": hits[k] / n_q for k in recall_ks}
    out["R@1%"] = hits["1%"] / n_q
    out["mAP@1000"] = ap_sum / ap_count if ap_count else math.nan
    out.update({f"acc@{t:g}km": float(np.mean(dist <= t)) for t in dist_thresholds})
    out.update(mean_km=float(dist.mean()), median_km=float(np.median(dist)), empty_rate=float(empty_rows.mean()),
               mean_candidates=float(per_q_candidates.mean()), median_candidates=float(np.median(per_q_candidates)),
               depth=top_k_needed)
    return out


def stage1_accuracy(rough_gps: np.ndarray, true_coords: np.ndarray, dist_thresholds=DIST_THRESHOLDS_KM,
                    earth_radius_km: float = REFERENCE_EARTH_RADIUS_KM) -> dict:
    """Accuracy of the stage-1 estimate itself (``accuracy_at_thresholds`` plus mean/median km)."""
    dist = haversine(rough_gps[:, 0], rough_gps[:, 1], true_coords[:, 0], true_coords[:, 1], earth_radius_km)
    out = {f"acc@{t:g}km": float(np.mean(dist <= t)) for t in dist_thresholds}
    out.update(mean_km=float(dist.mean()), median_km=float(np.median(dist)))
    return out


# -- inputs: the store's gallery, the dataset's truth, mmgeo's query embeddings and stage-1 estimates ---------

def gallery_from_store(store, collection: str = "mmgeo_satellite") -> Gallery:
    """Every point of ``collection`` with its vector, landmark id (-1 if none) and location."""
    coords, lids, embeds = [], [], []
    for p in store.scroll(collection, with_vectors=True):
        coords.append((p.payload["location"]["lat"], p.payload["location"]["lon"]))
        lid = p.payload.get("landmark_id")
        lids.append(int(lid) if lid not in (None, "") else -1)
        embeds.append(np.asarray(p.vectors["image"], dtype=np.float64))
    e = np.stack(embeds)
    return Gallery(np.array(coords, dtype=np.float64), np.array(lids, dtype=np.int64),
                   e / np.linalg.norm(e, axis=1, keepdims=True))


def ground_queries(root: Path, split: str = "query") -> pd.DataFrame:
    """One row per ground photo of ``split``: landmark_id, path, true lat/lon (from ``mml_{split}.csv``)."""
    master = pd.read_csv(root / split / f"mml_{split}.csv")
    coords = {int(r.landmark_id): (float(r.lat), float(r.lon)) for r in master.itertuples()}
    rows = []
    for r in pd.read_csv(root / split / f"mml_{split}_ground.csv").itertuples():
        for h in str(r.images).split():
            lid = int(r.landmark_id)
            rows.append((lid, root / split / "ground" / h[0] / h[1] / h[2] / f"{h}.jpg", *coords[lid]))
    return pd.DataFrame(rows, columns=["landmark_id", "path", "lat", "lon"])


def query_inputs(geolocator, photos: pd.DataFrame, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings, landmark ids, true coords, rough GPS) per query; ``landmark`` mode averages a landmark's photos."""
    groups = [g for _, g in photos.groupby("landmark_id", sort=False)] if mode == "landmark" else \
        [photos.iloc[[i]] for i in range(len(photos))]
    embeds, lids, truth, rough = [], [], [], []
    for g in groups:
        prepared = geolocator.prepare([str(p) for p in g["path"]])
        v = np.asarray(prepared.vectors, dtype=np.float64).mean(axis=0)
        embeds.append(v / np.linalg.norm(v))
        lids.append(int(g["landmark_id"].iloc[0]))
        truth.append((float(g["lat"].iloc[0]), float(g["lon"].iloc[0])))
        rough.append(prepared.hypotheses.top)
    return np.stack(embeds), np.array(lids), np.array(truth), np.array(rough, dtype=np.float64)


# -- the check -------------------------------------------------------------------------------------------------

COMPARED = ("R@1", "R@5", "R@10", "R@25", "R@1%", "mAP@1000", "acc@1km", "acc@10km", "acc@25km", "acc@200km",
            "acc@750km", "acc@2500km", "mean_km", "median_km", "empty_rate", "mean_candidates", "median_candidates",
            "depth")


def _radius(value) -> float:
    return math.inf if value in ("inf", None) else float(value)


def compare(rows: list[dict], expected: dict[tuple, dict], tol: float) -> list[str]:
    """Every metric of every ``protocol: reference`` row against the recomputation; returns the mismatches."""
    problems, checked = [], 0
    for row in rows:
        if row.get("protocol") != "reference":
            continue
        key = (row["mode"], row["method"], _radius(row["radius_km"]), row["fallback"] if row["method"] != "stage1" else "")
        if key not in expected:
            problems.append(f"no recomputation for row {key}")
            continue
        for metric, want in expected[key].items():
            got = row.get(metric)
            checked += 1
            if got is None or not (abs(float(got) - want) <= tol or (math.isnan(want) and math.isnan(float(got)))):
                problems.append(f"{key} {metric}: mmgeo-eval {got} vs recomputed {want}")
    if not checked:
        problems.append("no protocol: reference rows in the results")
    return problems


def recompute(geolocator, root: Path, rows: list[dict], earth_radius_km: float) -> dict[tuple, dict]:
    """The recomputed metrics of every configuration the reference rows name, keyed like :func:`compare`."""
    gallery = gallery_from_store(geolocator.store, geolocator.collection)
    photos = ground_queries(root)
    expected: dict[tuple, dict] = {}
    for mode in sorted({r["mode"] for r in rows if r.get("protocol") == "reference"}):
        embeds, lids, truth, rough = query_inputs(geolocator, photos, mode)
        expected[(mode, "stage1", math.inf, "")] = stage1_accuracy(rough, truth, earth_radius_km=earth_radius_km)
        for r in rows:
            if r.get("protocol") == "reference" and r["mode"] == mode and r["method"] != "stage1":
                radius = _radius(r["radius_km"])
                expected[(mode, r["method"], radius, r["fallback"])] = rerank_and_score(
                    embeds, lids, truth, rough, gallery, radius, r["fallback"], earth_radius_km=earth_radius_km)
    return expected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--store", required=True)
    parser.add_argument("--stage1", default=DEFAULT_STAGE1, choices=STAGE1)
    parser.add_argument("--results", type=Path, required=True, help="results.json written by mmgeo-eval")
    parser.add_argument("--tol", type=float, default=1e-9)
    args = parser.parse_args(argv)

    from mmgeo.qdrant import open_store

    rows = json.loads(args.results.read_text())
    earth = {float(r["earth_radius_km"]) for r in rows if r.get("protocol") == "reference"}
    if len(earth) != 1:
        print(f"expected one earth radius among the reference rows, found {sorted(earth)}")
        return 1
    store = open_store(args.store)
    try:
        geolocator = build_geolocator(store, stage1=args.stage1)
        expected = recompute(geolocator, args.dataset, rows, earth.pop())
    finally:
        store.close()
    problems = compare(rows, expected, args.tol)
    n_rows = sum(1 for r in rows if r.get("protocol") == "reference")
    for p in problems:
        print("MISMATCH", p)
    n_values = sum(len(v) for v in expected.values())
    print(f"{n_rows} reference rows, {len(expected)} recomputed configurations, {n_values} metric values: "
          f"{'all metrics agree to ' + format(args.tol, 'g') if not problems else f'{len(problems)} mismatch(es)'}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())

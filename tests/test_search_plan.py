"""Recall on real-like queries and the per-query search plan (issue 28): a graph that finds stored vectors
but misses queries that are not in the store must not be searched at its default ``ef``."""

from __future__ import annotations

import numpy as np
import pytest

from mmgeo.qdrant import EXACT, ClientStore, EdgeStore, SearchFilter, SearchParams, StoredPoint
from mmgeo.qdrant import admin as ops
from mmgeo.qdrant.admin.probes import PROBE_NOISE, SIZE_BANDS, band_of, probe_queries
from mmgeo.qdrant.base import GeoRadius
from mmgeo.qdrant.schema import VectorIdentity, build_payload, ensure_collection, point_id
from mmgeo.search.stage2 import SearchPlan, Stage2, engine_params, search_plan

DIM = 64
IDENT = VectorIdentity("image", "test-encoder", "random-init(seed=0)", DIM)
CITY = (40.7075, -74.0113)


def _city(store, n: int, *, modality: str = "satellite", seed: int = 0) -> str:
    """``n`` points packed within ~10 km of a city centre (every region of 25 km holds nearly all of them),
    vectors sharing one of 20 neighbourhood directions plus their own (the benchmark world's model)."""
    name = ensure_collection(store, modality, IDENT)
    rng = np.random.default_rng(seed)
    hoods = rng.standard_normal((20, DIM)).astype(np.float32)
    hoods /= np.linalg.norm(hoods, axis=1, keepdims=True)
    own = rng.standard_normal((n, DIM)).astype(np.float32)
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    vecs = 0.55 * hoods[rng.integers(0, 20, n)] + 0.835 * own
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    lat = CITY[0] + rng.uniform(-0.08, 0.08, n)
    lon = CITY[1] + rng.uniform(-0.1, 0.1, n)
    store.upsert(name, [StoredPoint(point_id(name, f"{modality}-{i}"),
                                    build_payload(key=f"{modality}-{i}", modality=modality, lat=float(lat[i]), lon=float(lon[i]),
                                                  landmark_id=f"lm{i % 50}", split="index"), {"image": vecs[i]})
                        for i in range(n)])
    return name


def _recall(store, name, probes, params_for) -> float:
    shares = []
    for v, a, o in zip(probes.vectors, probes.lat, probes.lon):
        flt = SearchFilter(radius=GeoRadius(float(a), float(o), 25.0))
        exact = {h.id for h in store.search(name, v, using="image", limit=10, flt=flt, params=EXACT)}
        got = {h.id for h in store.search(name, v, using="image", limit=10, flt=flt, params=params_for(flt))}
        shares.append(len(exact & got) / len(exact))
    return float(np.mean(shares))


def test_a_graph_that_misses_real_like_queries_is_not_searched_at_its_default_ef(tmp_path):
    with EdgeStore(tmp_path / "s") as store:
        name = _city(store, 3000)
        hnsw = ops.HnswSettings(m=8, ef_construct=32, full_scan_threshold_kb=1)
        [report] = ops.optimize(store, queries=40, hnsw=hnsw)
        record = store.get_metadata(name)["index"]
        assert record["measured"].startswith("perturbed") and report.measured == record["measured"]
        default = SearchParams(acorn=True)
        # the graph at its default ef misses real-like queries, and the record says so
        assert record["recall@10"]["25"] < ops.RECALL_TARGET
        assert any("default ef" in n for n in report.notes)
        assert any(c.get("widen") for b in record["plan"] for c in b["graph"])  # wide searches measured beside the graph
        # ... so a 25 km region (all 3,000 points) is searched exactly or with a larger ef, never the default
        plan = search_plan(store.get_metadata(name))
        chosen = plan.choose(3000)
        assert chosen == EXACT or (chosen.hnsw_ef or 0) > hnsw.ef_construct
        assert chosen != default
        # and that keeps recall on fresh real-like queries (another draw)
        fresh = probe_queries(store, name, using="image", queries=30, seed=7)
        assert _recall(store, name, fresh, lambda flt: plan.choose(store.count(name, flt, exact=False))) >= 0.98
        assert _recall(store, name, fresh, lambda flt: default) < ops.RECALL_TARGET


def test_probes_are_not_points_of_the_collection_and_say_how_they_were_made(tmp_path):
    with EdgeStore(tmp_path / "s") as store:
        name = _city(store, 200)
        probes = probe_queries(store, name, using="image", queries=20)
        assert f"norm {PROBE_NOISE:g}" in probes.method and probes.located
        assert len(probes.vectors) == 30 and probes.dense.sum() == 20  # 20 dense regions + 10 random centres
        for v in probes.vectors[:5]:
            [top] = store.search(name, v, using="image", limit=1, params=EXACT)
            assert top.score < 0.95  # a stored vector would score 1.0
        ground = _city(store, 50, modality="ground", seed=3)  # same encoder: the store has cross-view queries
        cross = probe_queries(store, name, using="image", queries=20)
        assert cross.method.startswith("cross-view") and repr(ground) in cross.method


def test_the_plan_picks_per_region_size_and_settings_still_force_one():
    graph = SearchParams(hnsw_ef=512, acorn=True)
    meta = {"index": {"kind": "hnsw", "acorn": True, "search": "plan", "hnsw_ef": None,
                      "plan": [{"below": 1000, "search": "exact"}, {"below": 100_000, "search": "hnsw", "hnsw_ef": 512},
                               {"below": 1_000_000, "search": "exact"}]}}
    plan = search_plan(meta)
    assert plan.by_size
    assert [plan.choose(n) for n in (10, 5000, 200_000, 50_000_000)] == [EXACT, graph, EXACT, EXACT]
    assert engine_params(meta, size=5000) == graph and engine_params(meta) == EXACT  # no size: the widest band
    assert search_plan(meta, "exact") == SearchPlan.fixed(EXACT)
    assert search_plan(meta, hnsw_ef=64) == SearchPlan.fixed(SearchParams(hnsw_ef=64, acorn=True))
    assert search_plan(meta, "approximate") == SearchPlan.fixed(SearchParams(acorn=True))
    old = {"index": {"kind": "hnsw", "acorn": True, "hnsw_ef": 128, "search": "hnsw"}}  # a record from before plans
    assert search_plan(old) == SearchPlan.fixed(SearchParams(hnsw_ef=128, acorn=True))
    assert band_of(99) == 0 and band_of(100) == 1 and band_of(10**9) == len(SIZE_BANDS)


@pytest.mark.parametrize("backend", ["edge", "client-local"])
def test_stage2_searches_each_query_with_its_planned_parameters(tmp_path, backend):
    store = EdgeStore(tmp_path / "s") if backend == "edge" else ClientStore(path=str(tmp_path / "s"))
    with store:
        name = _city(store, 300)
        plan = SearchPlan(((100, EXACT), (None, SearchParams(hnsw_ef=300))))
        seen = []
        search_batch = store.search_batch

        def spy(*args, params=None, **kw):
            seen.append((params, len(kw["filters"])))
            return search_batch(*args, params=params, **kw)

        store.search_batch = spy
        engine = Stage2(store, name, plan)
        small = SearchFilter(radius=GeoRadius(CITY[0], CITY[1], 0.5))
        big = SearchFilter(radius=GeoRadius(CITY[0], CITY[1], 25.0))
        q = np.ones((1, DIM), np.float32) / np.sqrt(DIM)
        found = engine.search([q, q, q], [small, big, None], candidates=20, groups=None, per_photo=False)
        assert sorted(seen, key=str) == sorted([(EXACT, 1), (SearchParams(hnsw_ef=300), 2)], key=str)
        assert found[1].estimate == store.count(name, big, exact=False) and found[2].estimate == 300
        assert engine.region_size(found[2], None, exact=False) == 300


def test_choose_plan_keeps_the_target_and_prefers_exact_unless_the_graph_is_faster():
    from mmgeo.qdrant.admin.probes import choose_plan

    def regions(band, size, exact_ms, graph, n=12):
        return [{"band": band, "size": size, "radius_km": 25.0, "exact_ms": exact_ms, "graph": dict(graph)} for _ in range(n)]

    measured = (regions(0, 10, 2.0, {None: (1.0, 0.5), 128: (1.0, 0.45), 2048: (1.0, 0.4)})  # ties: the smaller ef
                + regions(3, 2_000, 0.5, {None: (1.0, 0.45), 128: (1.0, 0.43)})               # within 20%: exact
                + regions(5, 20_000, 10.0, {None: (0.97, 4.0), 128: (0.999, 30.0)})          # keeps it only slower: exact
                + regions(7, 150_000, 200.0, {None: (0.9, 2.0), 128: (0.95, 3.0), 2048: (0.995, 25.0)})
                + regions(9, 2_000_000, 300.0, {None: (1.0, 1.0)}, n=3))                       # too few regions: exact
    plan = {p["band"]: p for p in choose_plan(measured, 0.99)}
    assert [(p["search"], p.get("hnsw_ef")) for p in plan.values()] == [
        ("hnsw", 128), ("exact", None), ("exact", None), ("hnsw", 2048), ("exact", None)]
    assert plan["100,000–300,000"]["graph"][0] == {"hnsw_ef": None, "recall@10": 0.9, "p50_ms": 2.0, "by_radius": {"25": 0.9}}


def test_choose_plan_holds_the_target_for_each_radius_in_a_band():
    """A band mixing unfiltered regions (the graph finds all) with 25 km ones (it misses some) is not promised the
    mix's mean: the 25 km regions alone must keep the target too (the dense city store's ≥100K band)."""
    from mmgeo.qdrant.admin.probes import choose_plan

    def regions(radius, graph, n=20):
        return [{"band": 7, "size": 150_000, "radius_km": radius, "exact_ms": 200.0, "graph": dict(graph)} for _ in range(n)]

    mixed = (regions(None, {512: (1.0, 3.0), 2048: (1.0, 20.0)}, n=60)
             + regions(25.0, {512: (0.975, 5.0), 2048: (0.995, 25.0)}))  # mean at ef 512: 0.994 >= 0.99, 25 km: 0.975
    [band] = choose_plan(mixed, 0.99)
    assert (band["search"], band["hnsw_ef"]) == ("hnsw", 2048)
    assert band["by_radius"] == {"none": 1.0, "25": 0.995} and band["recall@10"] == 0.995
    [band] = choose_plan(regions(None, {512: (1.0, 3.0)}, n=60) + regions(25.0, {512: (0.975, 5.0)}), 0.99)
    assert band["search"] == "exact"  # no ef keeps the 25 km regions: exact, though the mix's mean is 0.994


def test_choose_plan_turns_acorn_on_for_every_filter_where_the_default_saturates():
    """The dense city store's big band: at the engine's default ACORN selectivity (0.4) a permissive 25 km
    region is walked without ACORN and no ``ef`` keeps 0.99; ACORN on every filter does, and the plan records
    it so that stage 2 asks the engine for it."""
    from mmgeo.qdrant.admin.probes import ACORN_ALL, choose_plan, describe

    graph = {None: (0.9, 1.0), 512: (0.95, 2.0), 2048: (0.985, 8.0), (256, ACORN_ALL): (0.985, 3.0),
             (512, ACORN_ALL): (0.996, 5.0), (1024, ACORN_ALL): (0.999, 9.0)}
    regions = [{"band": 7, "size": 150_000, "radius_km": 25.0, "exact_ms": 40.0, "graph": dict(graph)} for _ in range(20)]
    [band] = choose_plan(regions, 0.99)
    assert (band["search"], band["hnsw_ef"], band["acorn_max_selectivity"]) == ("hnsw", 512, ACORN_ALL)
    assert describe(band) == "graph ef=512, ACORN on every filter"
    assert [c.get("acorn_max_selectivity") for c in band["graph"]] == [None, None, None, 1.0, 1.0, 1.0]
    meta = {"index": {"kind": "hnsw", "acorn": True, "search": "plan", "hnsw_ef": None, "plan": [band]},
            "quantization": {"kind": "int8", "rescore": True, "oversampling": 2.0}}
    assert search_plan(meta).choose(150_000) == SearchParams(hnsw_ef=512, acorn=True, acorn_max_selectivity=1.0, oversampling=2.0)
    # an older record (no selectivity) keeps the engine's default
    old = {"index": {**meta["index"], "plan": [{"below": None, "search": "hnsw", "hnsw_ef": 512}]}}
    assert search_plan(old).choose(150_000) == SearchParams(hnsw_ef=512, acorn=True)


def test_acorn_on_every_filter_reaches_the_engine_and_finds_what_the_default_misses(tmp_path):
    """A weak graph and a region holding about half the points (above ACORN's default selectivity, 0.4): the
    engine walks it with ACORN only when asked to for every filter, and that finds more of the exact top-10."""
    with EdgeStore(tmp_path / "s") as store:
        name = _city(store, 3000)
        store.tune(name, ops.HnswSettings(m=4, ef_construct=16, full_scan_threshold_kb=1, payload_m=0).tuning())
        probes = probe_queries(store, name, using="image", queries=40)
        half = SearchFilter(radius=GeoRadius(CITY[0], CITY[1], 7.0))
        assert 0.4 < store.count(name, half) / 3000 < 0.7

        def recall(params):
            exact = [{h.id for h in store.search(name, v, using="image", limit=10, flt=half, params=EXACT)} for v in probes.vectors]
            got = [{h.id for h in store.search(name, v, using="image", limit=10, flt=half, params=params)} for v in probes.vectors]
            return float(np.mean([len(g & e) / len(e) for g, e in zip(got, exact)]))

        default = recall(SearchParams(hnsw_ef=16, acorn=True))
        every = recall(SearchParams(hnsw_ef=16, acorn=True, acorn_max_selectivity=1.0))
        assert every > default + 0.02, (default, every)


def test_bands_below_the_full_scan_threshold_are_recorded_as_a_scan():
    """Below the engine's ``full_scan_threshold`` (KB of float vectors) a non-exact search scores every candidate
    whatever its ``ef``: such bands are recorded as a scan, not as the graph."""
    from mmgeo.qdrant.admin.probes import describe
    from mmgeo.qdrant.admin.tuning import mark_scans

    plan = [{"below": 1000, "search": "hnsw", "hnsw_ef": 128}, {"below": 3000, "search": "exact"},
            {"below": 10_000, "search": "hnsw", "hnsw_ef": None}, {"below": 30_000, "search": "hnsw", "hnsw_ef": 512},
            {"below": None, "search": "hnsw", "hnsw_ef": 1024, "acorn_max_selectivity": 1.0}]
    mark_scans(plan, 10_000, 256)  # 256-d: 1 KB a vector, so regions under 10,000 points are scanned
    assert [b.get("scan", False) for b in plan] == [True, False, True, False, False]
    assert [describe(b).split()[0] for b in plan] == ["scan", "exact", "scan", "graph", "graph"]
    assert describe(plan[-1]) == "graph ef=1024, ACORN on every filter"


@pytest.mark.parametrize("backend", ["edge", "client-local"])
def test_a_wide_search_is_the_filtered_search_where_the_region_is_wide_and_falls_back_where_not(tmp_path, backend):
    """The collection's top ``limit × widen`` kept in the region are the region's top ``limit`` when enough of them
    lie in it (exactly so with an exact unfiltered search); a narrow region is answered by the filtered search."""
    from mmgeo.geo import h3_field
    from mmgeo.qdrant.wide import Widened, admits, filter_fields, search_widened

    store = EdgeStore(tmp_path / "s") if backend == "edge" else ClientStore(path=str(tmp_path / "s"))
    with store:
        name = _city(store, 600)
        every = store.retrieve(name, [point_id(name, f"satellite-{i}") for i in range(600)])
        cell = every[0].payload[h3_field(6)]
        filters = [SearchFilter(radius=GeoRadius(CITY[0], CITY[1], 25.0)),   # every point
                   SearchFilter(radius=GeoRadius(CITY[0], CITY[1], 6.0)),    # about half
                   SearchFilter(radius=GeoRadius(CITY[0] + 0.05, CITY[1], 3.0), equals={"landmark_id": ["lm1", "lm2"]}),
                   SearchFilter(cells={h3_field(6): [cell]}), None]
        for flt in filters:  # the filter kept by hand is the engine's
            kept = int(admits(flt, [p.payload for p in every]).sum())
            assert kept == (600 if flt is None else store.count(name, flt, exact=True))
            assert flt is None or set(filter_fields(flt)) <= set(every[0].payload)
        rng = np.random.default_rng(3)
        queries = rng.standard_normal((len(filters), DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = store.search_batch(name, queries, using="image", limit=10, filters=filters, params=EXACT)
        calls = []
        search_batch = store.search_batch

        def spy(*args, **kw):
            calls.append(kw["filters"])
            return search_batch(*args, **kw)

        store.search_batch = spy
        wide = search_widened(store, name, queries, filters, using="image", limit=10, how=Widened(EXACT, 5), fields=("key",))
        assert [[h.id for h in w] for w in wide] == [[h.id for h in e] for e in exact]
        assert calls[0] == [None] * len(filters)  # one unfiltered pass, then the filtered search for the narrow one
        assert filters[2] in calls[1] and not {0, 1, 4} & {filters.index(f) for f in calls[1]}  # the wide ones stay wide
        calls.clear()
        plan = SearchPlan(((None, Widened(EXACT, 5)),))  # stage 2 searches a wide step the same way
        found = Stage2(store, name, plan).search([q[None, :] for q in queries], filters, candidates=10, groups=None, per_photo=False)
        assert [[h.id for h in f.hits] for f in found] == [[h.id for h in e] for e in exact]


def test_choose_plan_picks_a_wide_search_where_the_region_is_wide_and_stage2_asks_for_it():
    """The dense city store's big band: the filtered graph keeps 0.99 only at ef 3072 with ACORN (30 ms); the
    collection's top 100 unfiltered, kept in the region, keeps it at a tenth of that. A small band, where the
    wide search falls back to exact, keeps exact."""
    from mmgeo.qdrant.admin.probes import ACORN_ALL, WIDE, choose_plan, describe
    from mmgeo.qdrant.wide import Widened

    big = {None: (0.91, 1.5), (3072, ACORN_ALL): (0.998, 30.0), (WIDE, 256, 10): (0.985, 2.0), (WIDE, 512, 10): (0.995, 2.5)}
    small = {None: (1.0, 0.5), (WIDE, 512, 10): (1.0, 3.0)}
    regions = ([{"band": 7, "size": 150_000, "radius_km": 25.0, "exact_ms": 55.0, "graph": dict(big)} for _ in range(20)]
               + [{"band": 0, "size": 50, "radius_km": 2.0, "exact_ms": 2.0, "graph": dict(small)} for _ in range(20)])
    plan = choose_plan(regions, 0.99)
    assert [(b["search"], b["hnsw_ef"] if b["search"] != "exact" else None) for b in plan] == [("hnsw", None), ("wide", 512)]
    assert plan[1]["widen"] == 10 and describe(plan[1]).startswith("wide: the collection's top 10x unfiltered (graph ef=512)")
    meta = {"index": {"kind": "hnsw", "acorn": True, "search": "plan", "hnsw_ef": None, "plan": plan},
            "quantization": {"kind": "int8", "rescore": True, "oversampling": 2.0}}
    chosen = search_plan(meta).choose(150_000)
    assert chosen == Widened(SearchParams(hnsw_ef=512, acorn=True, oversampling=2.0), 10)
    assert engine_params(meta, size=150_000) == chosen.params  # an unfiltered caller (kNN stage 1) gets its search


def test_without_a_graph_every_non_exact_band_is_a_scan_wide_ones_too():
    """A collection without a graph (``optimize --m 0``): the graph steps and the wide ones scan the quantized
    vectors whatever the region's size, and say so."""
    from mmgeo.qdrant.admin.probes import WIDE, describe
    from mmgeo.qdrant.admin.tuning import mark_scans

    plan = [{"below": 1_000, "search": "hnsw", "hnsw_ef": None}, {"below": 300_000, "search": "exact", "hnsw_ef": None},
            {"below": None, "search": WIDE, "hnsw_ef": None, "widen": 10}]
    graph = [dict(b) for b in plan]
    mark_scans(graph, 10_000, 1024)
    assert describe(graph[-1]).startswith("wide: the collection's top 10x unfiltered (graph ef=None)")
    mark_scans(plan, 10_000, 1024, graph=False)
    assert [describe(b).split()[0] for b in plan] == ["scan", "exact", "wide:"]
    assert describe(plan[-1]) == ("wide: the collection's top 10x unfiltered (quantized scan, rescored), kept in the "
                                  "region (exact where they fall short)")


def test_the_plan_is_measured_with_the_hits_stage_2_asks_for(tmp_path, monkeypatch):
    """A wide step fetches ``hits × widen`` and falls back below ``hits`` kept: measured at another limit, its
    recorded time and recall would not be stage 2's. Every probe search of optimize asks for stage 2's hits."""
    from mmgeo.qdrant.admin.probes import PLAN_HITS, WIDE_LADDER
    from mmgeo.search.geolocator import SearchSettings
    from mmgeo.search.stage2 import groups_needed

    assert PLAN_HITS == groups_needed(SearchSettings().top_n)
    widens = {key[2] for key in WIDE_LADDER}
    with EdgeStore(tmp_path / "s") as store:
        name = _city(store, 1500)
        asked: list[int] = []
        for method in ("search", "search_batch"):
            original = getattr(store, method)

            def spy(*args, _original=original, **kwargs):
                asked.append(kwargs["limit"])
                return _original(*args, **kwargs)

            monkeypatch.setattr(store, method, spy)
        [report] = ops.optimize(store, queries=10, hnsw=ops.HnswSettings(m=8, ef_construct=32))
        record = store.get_metadata(name)["index"]
        assert record["hits"] == PLAN_HITS
        assert record["density"]["points"] == 1500
        plan = search_plan(store.get_metadata(name), points=1500)
        assert plan.density is not None or plan == SearchPlan.fixed(EXACT)  # an all-exact plan needs no sizes
    assert report.plan and asked
    assert set(asked) <= {PLAN_HITS} | {PLAN_HITS * w for w in widens}, sorted(set(asked))
    assert PLAN_HITS * max(widens) in asked

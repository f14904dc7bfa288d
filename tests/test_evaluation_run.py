"""mmgeo-eval over queries: sweeps, ablations and the 'fail' convention, on a world with known answers."""

from __future__ import annotations

import pytest

from known_world import LA, NYC, CodeEncoder, FixedStage1, photo
from mmgeo.evaluation.run import Config, Query, evaluate, plan
from mmgeo.geo import destination
from mmgeo.search.geolocator import Geolocator, SearchSettings


def _query(tmp_path, code, landmark_id, lat, lon):
    path = tmp_path / f"q{code}.png"
    photo(code).save(path)
    return Query((path,), landmark_id, lat, lon)


def test_reference_plan_has_the_reference_grid():
    configs = plan("reference", 1000)
    radii = {c.settings.radius_km for c in configs if c.settings and c.settings.region == "radius"}
    assert radii == {5.0, 25.0, 100.0, 500.0, 2000.0}
    assert sum(1 for c in configs if c.settings and c.settings.region == "none") == 2  # fail and full, as reported
    assert [c.method for c in configs][0] == "stage1" and {c.protocol for c in configs} == {"reference"}


def test_evaluate_scores_known_answers(world, tmp_path):
    stage1 = FixedStage1([(*destination(*NYC, 200, 12), 1.0)])  # estimate 12 km from the Empire State Building
    geo = Geolocator(world, CodeEncoder(), stage1)
    queries = [_query(tmp_path, 10, "1", *NYC), _query(tmp_path, 20, "4", *LA)]
    configs = [Config("stage1", None),
               Config("stage1+stage2", SearchSettings(radius_km=25, fallback="fail", top_n=10)),
               Config("stage1+stage2", SearchSettings(region="none", top_n=10))]
    stage1_only, radius, full = evaluate(geo, queries, configs)
    assert "R@1" not in stage1_only and stage1_only["acc@25km"] == 0.5 and stage1_only["acc@10km"] == 0.0
    # NYC query: found within 25 km; LA query: its tile is outside the region → a miss, located at the estimate
    assert radius["R@1"] == 0.5 and radius["acc@1km"] == 0.5 and radius["acc@2500km"] == 0.5
    assert radius["empty_rate"] == 0.0 and radius["mean_candidates"] == 2.0
    # no geo filter: both found; the look-alike ties on image score and loses on the stage-1 prior
    assert full["R@1"] == 1.0 and full["acc@1km"] == 1.0
    assert full["n_queries"] == 2 and full["geoclip_gallery"] == "fixed"


def test_empty_query_set_is_a_clear_error(world):
    from mmgeo.errors import InputError

    with pytest.raises(InputError, match="empty"):
        evaluate(Geolocator(world, CodeEncoder(), FixedStage1([(*NYC, 1.0)])), [], plan("all", 10))

"""Offline place names for known points (GeoNames table shipped by a pip package)."""

from __future__ import annotations

import math

import pytest

from mmgeo.places import TOWN_KM, place_name, place_names


@pytest.mark.parametrize("lat,lon,town,country", [
    (40.7484, -73.9857, "New York City", "United States"),   # Empire State Building: the city, not the nearest quarter
    (48.8584, 2.2945, "Paris", "France"),                    # Eiffel Tower
    (-33.8568, 151.2153, "Sydney", "Australia"),             # Opera House
    (51.5007, -0.1246, "London", "United Kingdom"),         # Big Ben
    (64.1466, -21.9426, "Reykjavík", "Iceland"),
])
def test_known_landmarks_are_named_by_their_city(lat, lon, town, country):
    place = place_name(lat, lon)
    assert place["name"] == town and place["country"] == country
    assert place["distance_km"] <= TOWN_KM and place["label"].startswith(town)


def test_open_sea_says_how_far_the_nearest_town_is_and_bad_points_are_none():
    sea, bad, antimeridian = place_names([(0.0, -140.0), (math.nan, 0.0), (-16.6, 179.99)])
    assert sea["distance_km"] > 500 and sea["label"].startswith(f"{sea['distance_km']:.0f} km from")
    assert bad is None
    assert antimeridian["country"] == "Fiji"  # great-circle neighbours across ±180°
    assert place_name(91.0, 0.0) is None


def test_the_table_is_cached_once_and_a_broken_cache_is_rebuilt(tmp_path, monkeypatch):
    from mmgeo import places

    monkeypatch.setenv("MMGEO_CACHE", str(tmp_path))
    points = [(40.7484, -73.9857), (0.0, -140.0), (-16.6, 179.99), (35.0, 139.0)]
    places._table.cache_clear()
    parsed = place_names(points)
    (cached,) = (tmp_path / "places").glob("cities1000-*.npz")
    places._table.cache_clear()
    assert place_names(points) == parsed  # read back from the cache
    cached.write_bytes(b"not an npz")
    places._table.cache_clear()
    assert place_names(points) == parsed and cached.stat().st_size > 1_000_000  # parsed and cached again
    places._table.cache_clear()

"""Geodesy: haversine on the 6371.0088 km sphere and H3 covers that never miss a point of the disk."""

from __future__ import annotations

import h3
import numpy as np
import pytest

from mmgeo.geo import COVER_MAX_CELLS, check_lat_lon, cover_disk, destination, haversine_km


def test_haversine_known_values():
    assert haversine_km(0, 179.9, 0, -179.9) == pytest.approx(22.239, abs=1e-3)  # across the antimeridian
    assert haversine_km(89.9, 0, 89.9, 180) == pytest.approx(22.239, abs=1e-3)  # over the pole
    assert haversine_km(0, 0, 0, 1) == pytest.approx(6371.0088 * np.pi / 180, rel=1e-12)


def test_destination_round_trip():
    lat, lon = destination(40.0, -74.0, 37.0, 123.4)
    assert haversine_km(40.0, -74.0, lat, lon) == pytest.approx(123.4, rel=1e-9)


@pytest.mark.parametrize("centre", [(40.0, -74.0), (0.0, 179.99), (-33.9, 151.2), (78.2, 15.6), (89.5, 0.0)])
@pytest.mark.parametrize("radius", [1.0, 5.0, 25.0, 100.0, 500.0, 2000.0])
def test_cover_contains_every_point_of_the_disk(centre, radius):
    res, cells = cover_disk(*centre, radius)
    covered = set(cells)
    for bearing in np.linspace(0, 360, 48, endpoint=False):
        for frac in (0.3, 0.7, 0.999):
            assert h3.latlng_to_cell(*destination(*centre, bearing, radius * frac), res) in covered
    assert len(cells) <= COVER_MAX_CELLS or res == 1  # coarsest stored resolution: as many cells as needed


@pytest.mark.parametrize("bad,match", [(("x", 1), "not numbers"), ((float("nan"), 1), "not finite"),
                                       ((91, 0), "latitude"), ((0, -180.5), "longitude")])
def test_check_lat_lon(bad, match):
    with pytest.raises(ValueError, match=match):
        check_lat_lon(*bad)

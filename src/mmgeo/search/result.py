"""What a search returns, and its renderings: JSON (stable schema), GeoJSON, a rich table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import mmgeo

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Candidate:
    """One ranked answer: a landmark (or an unlabelled tile) with every score that ranked it.

    ``score`` = w_image * ``image_score`` + w_text * ``text_score`` + w_prior * ``prior``
    (or reciprocal-rank fusion of the three, if chosen); ``distance_km`` is from the stage-1 estimate;
    ``place`` names the town it is in or near (:func:`mmgeo.places.place_names`).
    """

    rank: int
    key: str
    landmark_id: str | None
    name: str | None
    lat: float
    lon: float
    distance_km: float
    score: float
    image_score: float
    text_score: float | None
    prior: float
    evidence: list[dict[str, Any]] = field(default_factory=list)
    place: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """What to call this answer: the landmark's name, else the place it is in or near, else its key
        (an unnamed index tile has no name, but a place)."""
        return self.name or (self.place["label"] if self.place else None) or self.key


@dataclass(frozen=True)
class SearchResult:
    """The answer to one query (one or several photos of one place)."""

    photos: list[str]
    estimate: dict[str, Any]
    region: dict[str, Any]
    candidates: list[Candidate]
    confidence: float
    abstained: bool
    text_space: str | None
    timings_ms: dict[str, float]
    settings: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    """Which encoder, stage 1 and text rerank the search used, and why (``encoder``, ``stage1``, ``text``)."""
    calibration: str = "uncalibrated"
    """``calibrated``: ``confidence`` is P(answer within 25 km of the truth), fitted for this store and encoder;
    ``uncalibrated``: a score in [0, 1] that is not a probability (``calibration_note`` says why)."""
    calibration_note: str = ""
    landmark_probability: float | None = None
    """P(the top landmark is the right one), calibrated stores only."""
    in_domain: float | None = None
    """Share of the store's own photos less near to their nearest neighbour than this query is to its own (None: no
    geotagged photos to compare with); near 0: unlike anything stored."""
    consistency: dict[str, Any] = field(default_factory=lambda: {"consistent": True, "outliers": [], "groups": []})
    abstain_reason: str | None = None
    signals: dict[str, float] = field(default_factory=dict)
    """The features the confidence was computed from (and the uncalibrated ``heuristic``)."""

    @property
    def best(self) -> Candidate | None:
        return None if self.abstained or not self.candidates else self.candidates[0]

    def to_json(self) -> dict[str, Any]:
        """The documented JSON schema (``schema_version`` 1): see README 'Search output'."""
        return {"schema_version": SCHEMA_VERSION, "mmgeo_version": mmgeo.__version__, **asdict(self),
                "answer": asdict(self.best) if self.best else None}

    def to_geojson(self) -> dict[str, Any]:
        """FeatureCollection: the stage-1 estimate, the region searched, the ranked candidates."""
        lat, lon = self.estimate["lat"], self.estimate["lon"]
        features: list[dict[str, Any]] = [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
             "properties": {"kind": "estimate", "source": self.estimate["source"]}},
        ]
        region_geom = self.region.get("geometry")
        if region_geom is None and self.region.get("radius_km"):
            region_geom = {"type": "Point", "coordinates": [lon, lat]}
        if region_geom is not None:
            features.append({"type": "Feature", "geometry": region_geom,
                             "properties": {"kind": "region", "mode": self.region["mode"],
                                            "radius_km": self.region.get("radius_km"),
                                            "description": self.region["description"]}})
        for c in self.candidates:
            features.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [c.lon, c.lat]},
                             "properties": {"kind": "candidate", **{k: v for k, v in asdict(c).items()
                                                                   if k not in ("lat", "lon", "evidence", "place")},
                                            "place": c.place["label"] if c.place else None}})
        return {"type": "FeatureCollection", "features": features}

"""JSON Schema of ``mmgeo-search --json`` output (``schema_version`` 1), for users' validators and our tests."""

from __future__ import annotations

_NUM = {"type": "number"}
_NULLABLE_NUM = {"type": ["number", "null"]}
_NULLABLE_STR = {"type": ["string", "null"]}
PLACE_SCHEMA = {
    "oneOf": [{"type": "null"}, {
        "type": "object", "required": ["name", "region", "country", "country_code", "distance_km", "label"],
        "properties": {"name": {"type": "string"}, "region": _NULLABLE_STR, "country": {"type": "string"},
                       "country_code": {"type": "string"}, "distance_km": {"type": "number", "minimum": 0},
                       "label": {"type": "string"}},
    }],
}

CANDIDATE_SCHEMA = {
    "type": "object",
    "required": ["rank", "key", "landmark_id", "name", "lat", "lon", "distance_km", "score", "image_score",
                 "text_score", "prior", "evidence", "place"],
    "properties": {
        "rank": {"type": "integer", "minimum": 1}, "key": {"type": "string"}, "landmark_id": _NULLABLE_STR,
        "name": _NULLABLE_STR, "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "lon": {"type": "number", "minimum": -180, "maximum": 180}, "distance_km": _NUM, "score": _NUM,
        "image_score": _NUM, "text_score": _NULLABLE_NUM, "prior": _NUM, "evidence": {"type": "array"}, "place": PLACE_SCHEMA,
    },
}

SEARCH_RESULT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "mmgeo search result",
    "type": "object",
    "required": ["schema_version", "mmgeo_version", "photos", "estimate", "region", "candidates", "answer",
                 "confidence", "abstained", "text_space", "timings_ms", "settings", "problems", "notes", "calibration",
                 "landmark_probability", "in_domain", "consistency", "abstain_reason"],
    "properties": {
        "schema_version": {"const": 1},
        "photos": {"type": "array", "items": {"type": "string"}},
        "estimate": {"type": "object", "required": ["lat", "lon", "source", "hypotheses", "place"],
                     "properties": {"place": PLACE_SCHEMA}},
        "region": {"type": "object", "required": ["mode", "description", "radius_km", "candidates_in_region",
                                                   "fallback_used", "geometry"]},
        "candidates": {"type": "array", "items": CANDIDATE_SCHEMA},
        "answer": {"oneOf": [{"type": "null"}, CANDIDATE_SCHEMA]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "abstained": {"type": "boolean"},
        "text_space": _NULLABLE_STR,
        "timings_ms": {"type": "object", "additionalProperties": _NUM},
        "problems": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "object", "additionalProperties": {"type": "string"}},
        "calibration": {"enum": ["calibrated", "uncalibrated"]},
        "calibration_note": {"type": "string"},
        "landmark_probability": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "in_domain": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "consistency": {"type": "object", "required": ["consistent", "outliers", "groups"],
                        "properties": {"consistent": {"type": "boolean"}, "outliers": {"type": "array", "items": {"type": "string"}},
                                       "groups": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                                       "rule": {"type": "string"}}},
        "abstain_reason": _NULLABLE_STR,
        "signals": {"type": "object", "additionalProperties": _NUM},
    },
}

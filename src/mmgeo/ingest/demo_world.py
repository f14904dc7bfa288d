"""A small world in the exact MMLandmarks layout, generated offline for the demo and the tests.

Real US landmark coordinates; procedurally drawn images. Each landmark has a visual
signature (palette + pattern) shared by its satellite tile (seen from above) and its
ground photos (seen at an angle under a sky band), and the terrain colour varies
smoothly with location, so a model can learn both "which tile" and "roughly where".
Index tiles are distractors clustered around the landmarks, like the real index.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmgeo.geo import destination
from mmgeo.ingest.mmlandmarks import shard_path


@dataclass(frozen=True)
class Landmark:
    name: str
    lat: float
    lon: float
    category: str
    place: str
    blurb: str


LANDMARKS: tuple[Landmark, ...] = (
    Landmark("Empire State Building", 40.7484, -73.9857, "skyscraper", "Manhattan, New York City", "an Art Deco skyscraper that was the world's tallest building for forty years"),
    Landmark("Statue of Liberty", 40.6892, -74.0445, "monument", "Liberty Island, New York Harbor", "a colossal copper statue of a robed woman holding a torch, a gift from France"),
    Landmark("Brooklyn Bridge", 40.7061, -73.9969, "bridge", "New York City", "a hybrid cable-stayed suspension bridge over the East River with Gothic stone towers"),
    Landmark("Bethesda Terrace", 40.7740, -73.9708, "park", "Central Park, New York City", "a two-level terrace with a fountain and an angel statue overlooking the lake"),
    Landmark("Chrysler Building", 40.7516, -73.9755, "skyscraper", "Midtown Manhattan, New York City", "an Art Deco skyscraper crowned by a terraced stainless-steel spire"),
    Landmark("Flatiron Building", 40.7411, -73.9897, "skyscraper", "Manhattan, New York City", "a triangular steel-framed building on a wedge-shaped block"),
    Landmark("Grand Central Terminal", 40.7527, -73.9772, "railway station", "Midtown Manhattan, New York City", "a commuter rail terminal with a celestial ceiling mural in its main concourse"),
    Landmark("Lincoln Memorial", 38.8893, -77.0502, "memorial", "National Mall, Washington, D.C.", "a neoclassical temple with a seated marble statue of Abraham Lincoln"),
    Landmark("Washington Monument", 38.8895, -77.0353, "monument", "National Mall, Washington, D.C.", "a marble obelisk, the tallest stone structure in the world"),
    Landmark("United States Capitol", 38.8899, -77.0091, "government building", "Capitol Hill, Washington, D.C.", "the domed seat of the United States Congress"),
    Landmark("White House", 38.8977, -77.0365, "government building", "Washington, D.C.", "the white-painted residence and workplace of the president"),
    Landmark("Jefferson Memorial", 38.8814, -77.0365, "memorial", "Tidal Basin, Washington, D.C.", "a round neoclassical memorial with a bronze statue of Thomas Jefferson"),
    Landmark("Golden Gate Bridge", 37.8199, -122.4783, "bridge", "San Francisco, California", "an International Orange suspension bridge spanning the strait into the bay"),
    Landmark("Alcatraz Island", 37.8267, -122.4230, "island", "San Francisco Bay, California", "a small island with a lighthouse and a former federal prison"),
    Landmark("Coit Tower", 37.8024, -122.4058, "tower", "Telegraph Hill, San Francisco", "a slender white concrete tower with Depression-era murals"),
    Landmark("Palace of Fine Arts", 37.8029, -122.4484, "monument", "Marina District, San Francisco", "a rotunda and colonnade beside a lagoon, built for the 1915 exposition"),
    Landmark("Transamerica Pyramid", 37.7952, -122.4028, "skyscraper", "Financial District, San Francisco", "a futurist pyramid-shaped skyscraper"),
    Landmark("Willis Tower", 41.8789, -87.6359, "skyscraper", "Chicago Loop, Illinois", "a black 110-storey skyscraper of bundled tubes with a glass skydeck"),
    Landmark("Cloud Gate", 41.8827, -87.6233, "sculpture", "Millennium Park, Chicago", "a bean-shaped sculpture of mirror-polished stainless steel"),
    Landmark("Wrigley Field", 41.9484, -87.6553, "stadium", "Chicago, Illinois", "a baseball park with ivy-covered outfield walls and a hand-turned scoreboard"),
    Landmark("Navy Pier", 41.8917, -87.6086, "pier", "Chicago lakefront, Illinois", "a pier on Lake Michigan with a Ferris wheel and gardens"),
    Landmark("Hollywood Sign", 34.1341, -118.3215, "sign", "Hollywood Hills, Los Angeles", "giant white capital letters on Mount Lee"),
    Landmark("Griffith Observatory", 34.1184, -118.3004, "observatory", "Griffith Park, Los Angeles", "an Art Deco observatory with three copper domes above the city"),
    Landmark("Santa Monica Pier", 34.0086, -118.4986, "pier", "Santa Monica, California", "a pier with an amusement park and a solar-powered Ferris wheel"),
    Landmark("Space Needle", 47.6205, -122.3493, "tower", "Seattle Center, Washington", "an observation tower with a flying-saucer-shaped top"),
    Landmark("Pike Place Market", 47.6097, -122.3422, "market", "Seattle, Washington", "a public market on the waterfront famous for its neon clock and fish throwing"),
    Landmark("Gateway Arch", 38.6247, -90.1848, "monument", "St. Louis, Missouri", "a stainless-steel catenary arch on the Mississippi riverfront"),
    Landmark("Mount Rushmore", 43.8791, -103.4591, "memorial", "Black Hills, South Dakota", "four presidents' faces carved into a granite mountain"),
    Landmark("Mather Point", 36.0617, -112.1077, "viewpoint", "Grand Canyon, Arizona", "a rim overlook above layered red canyon walls"),
    Landmark("Hoover Dam", 36.0161, -114.7377, "dam", "Black Canyon, Nevada-Arizona", "a concrete arch-gravity dam holding back Lake Mead"),
    Landmark("Bellagio Fountains", 36.1126, -115.1767, "fountain", "Las Vegas Strip, Nevada", "a lake with choreographed water fountains in front of a casino"),
    Landmark("The Alamo", 29.4260, -98.4861, "mission", "San Antonio, Texas", "a limestone Spanish mission church, site of an 1836 battle"),
    Landmark("Space Center Houston", 29.5519, -95.0981, "museum", "Houston, Texas", "the visitor centre of the NASA Johnson Space Center with rockets on display"),
    Landmark("Independence Hall", 39.9489, -75.1500, "government building", "Philadelphia, Pennsylvania", "a red-brick Georgian building where the Declaration of Independence was signed"),
    Landmark("Fenway Park", 42.3467, -71.0972, "stadium", "Boston, Massachusetts", "a baseball park with a tall green left-field wall"),
    Landmark("Old North Church", 42.3663, -71.0544, "church", "North End, Boston", "a brick church with a white steeple where two lanterns were hung"),
    Landmark("American Falls", 43.0828, -79.0742, "waterfall", "Niagara Falls, New York", "a broad waterfall over a rock talus at the Niagara River"),
    Landmark("USS Arizona Memorial", 21.3649, -157.9500, "memorial", "Pearl Harbor, Hawaii", "a white memorial straddling a sunken battleship"),
    Landmark("Diamond Head", 21.2620, -157.8060, "volcano", "Honolulu, Hawaii", "a volcanic tuff cone with a crater trail above Waikiki"),
    Landmark("Kennedy Space Center", 28.5729, -80.6490, "spaceport", "Merritt Island, Florida", "a launch site with a huge vehicle assembly building"),
    Landmark("Cinderella Castle", 28.4195, -81.5812, "castle", "Magic Kingdom, Florida", "a fairy-tale castle with blue spires at a theme park"),
    Landmark("Jackson Square", 29.9574, -90.0629, "square", "French Quarter, New Orleans", "a historic park before a white cathedral with three spires"),
    Landmark("Graceland", 35.0477, -90.0260, "mansion", "Memphis, Tennessee", "a colonial-revival mansion that was the home of Elvis Presley"),
    Landmark("The Parthenon", 36.1497, -86.8133, "museum", "Centennial Park, Nashville", "a full-scale replica of the Athenian temple"),
    Landmark("Red Rocks Amphitheatre", 39.6654, -105.2057, "amphitheatre", "Morrison, Colorado", "an open-air concert venue between giant red sandstone monoliths"),
    Landmark("Old Faithful", 44.4605, -110.8281, "geyser", "Yellowstone National Park, Wyoming", "a cone geyser that erupts at predictable intervals"),
    Landmark("Devils Tower", 44.5902, -104.7146, "butte", "Black Hills, Wyoming", "a monolithic igneous butte with columnar joints"),
    Landmark("Multnomah Falls", 45.5762, -122.1158, "waterfall", "Columbia River Gorge, Oregon", "a two-tiered waterfall with a stone footbridge"),
    Landmark("Delicate Arch", 38.7436, -109.4993, "rock arch", "Arches National Park, Utah", "a freestanding red sandstone natural arch"),
    Landmark("Mackinac Bridge", 45.8174, -84.7278, "bridge", "Straits of Mackinac, Michigan", "a long suspension bridge between Michigan's two peninsulas"),
)
"""Real US landmarks (WGS84 degrees). Categories and blurbs are written for the demo texts."""

GROUND_SIZE = (256, 192)
DEMO_PHOTO = "demo-photo.jpg"
SATELLITE_SIZE = (192, 192)


def _hex_id(*parts: object) -> str:
    return hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:16]


def _terrain(lat: float, lon: float) -> np.ndarray:
    """A terrain colour that varies smoothly with location (green east, tan south-west, grey north)."""
    east = (lon + 125.0) / 60.0
    north = (lat - 20.0) / 30.0
    return np.clip(np.array([0.35 + 0.4 * (1 - east), 0.3 + 0.35 * east, 0.25 + 0.3 * north]), 0, 1)


@dataclass(frozen=True)
class _Signature:
    colours: np.ndarray  # (3, 3) RGB in [0, 1]
    pattern: int
    freq: float
    angle: float
    terrain: np.ndarray


def _signature(seed: int, lat: float, lon: float, category: str | None = None) -> _Signature:
    """A landmark's look. Its kind (category) sets the pattern and main colour, so what a place *is*
    can be seen, as in real photos; the rest is the landmark's own."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0, 1, (3, 3))
    pattern = int(rng.integers(0, 5))
    if category is not None:
        kind = np.random.default_rng(int(hashlib.sha1(category.encode()).hexdigest()[:8], 16))
        colours[0] = kind.uniform(0, 1, 3)
        pattern = int(kind.integers(0, 5))
    return _Signature(colours, pattern, float(rng.uniform(2, 7)), float(rng.uniform(0, math.pi)), _terrain(lat, lon))


def _pattern(sig: _Signature, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RGB field of the signature at coordinates u, v in [0, 1]."""
    ca, sa = math.cos(sig.angle), math.sin(sig.angle)
    x, y = (u - 0.5) * ca - (v - 0.5) * sa, (u - 0.5) * sa + (v - 0.5) * ca
    f = sig.freq
    if sig.pattern == 0:
        t = np.sin(2 * math.pi * f * np.hypot(x, y))
    elif sig.pattern == 1:
        t = np.sin(2 * math.pi * f * x)
    elif sig.pattern == 2:
        t = np.sign(np.sin(2 * math.pi * f * x) * np.sin(2 * math.pi * f * y))
    elif sig.pattern == 3:
        t = np.cos(2 * math.pi * f * np.hypot(x - 0.15, y + 0.1)) * np.sin(2 * math.pi * f * y)
    else:
        t = np.sin(f * np.arctan2(y, x) * 2)
    w = (t[..., None] + 1) / 2
    mix = w * sig.colours[0] + (1 - w) * sig.colours[1]
    centre = np.clip(1.0 - 2.2 * np.hypot(x, y), 0, 1)[..., None]
    return centre * mix + (1 - centre) * (0.85 * sig.terrain + 0.15 * sig.colours[2])


def _to_image(field: np.ndarray, rng: np.random.Generator, noise: float) -> Image.Image:
    field = field + rng.normal(0, noise, field.shape)
    return Image.fromarray((np.clip(field, 0, 1) * 255).astype(np.uint8), "RGB")


def render_satellite(sig: _Signature, rng: np.random.Generator) -> Image.Image:
    """A top-down tile of the signature."""
    w, h = SATELLITE_SIZE
    v, u = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    return _to_image(_pattern(sig, u, v), rng, 0.03)


def render_ground(sig: _Signature, rng: np.random.Generator) -> Image.Image:
    """A ground-level view: sky band, then the signature foreshortened, with a random viewpoint."""
    w, h = GROUND_SIZE
    horizon = rng.uniform(0.25, 0.45)
    v, u = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    depth = np.clip((v - horizon) / (1 - horizon), 1e-3, 1)
    shift, zoom = rng.uniform(-0.15, 0.15), rng.uniform(0.7, 1.1)
    field = _pattern(sig, 0.5 + (u - 0.5 + shift) * zoom / (0.4 + depth), 0.2 + 0.8 * depth * zoom)
    # the sky's tint follows the terrain a little too (haze, latitude light), as real skies differ by region
    sky = (0.8 * np.array([0.55, 0.7, 0.95]) + 0.2 * sig.terrain) * (1 - 0.3 * v[..., None]) + rng.uniform(-0.05, 0.05, 3)
    field = np.where((v < horizon)[..., None], sky, field * rng.uniform(0.8, 1.15))
    return _to_image(field, rng, 0.04)


def _article(lm: Landmark) -> dict[str, str]:
    return {
        "title": lm.name,
        "summary": f"{lm.name} is a {lm.category} in {lm.place}. It is {lm.blurb}.",
        "History": f"{lm.name} attracts many visitors every year and appears in countless photographs.",
    }


def make_demo_world(
    root: str | Path,
    *,
    n_ground: int = 4,
    distractors_per_landmark: int = 6,
    query_every: int = 3,
    seed: int = 0,
) -> Path:
    """Write the demo world to ``root`` in the MMLandmarks layout and return ``root``.

    Every ``query_every``-th landmark goes to the ``query`` split, the rest to ``train``;
    each gets one satellite tile, ``n_ground`` ground photos and one article. The ``index``
    split holds distractor tiles 0.5-60 km around every landmark.
    ``demo-photo.jpg`` at the root is a new photo of the first landmark (the Empire State Building),
    in no CSV: the model never saw it, though it knows the place.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows: dict[str, dict[str, list]] = {s: {"landmarks": [], "ground": [], "satellite": [], "text": []} for s in ("train", "query")}
    info, index_rows = [], []

    def save(img: Image.Image, rel: str) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=92) if rel.endswith(".jpg") else img.save(path)
        return path

    for i, lm in enumerate(LANDMARKS):
        lid = str(1000 + i)
        split = "query" if i % query_every == 1 else "train"
        sig = _signature(seed * 7919 + i, lm.lat, lm.lon, lm.category)
        commons = lm.name.replace(" ", "_")
        rows[split]["landmarks"].append([lid, commons, lm.lat, lm.lon])
        info.append([lid, lm.lat, lm.lon, "", lm.category, f"place/{lm.category}", commons, f"Q{900000 + i}"])
        sat_id = _hex_id(seed, "sat", lid)
        save(render_satellite(sig, rng), shard_path(split, "satellite", sat_id))
        rows[split]["satellite"].append([lid, sat_id])
        ground_ids = [_hex_id(seed, "ground", lid, k) for k in range(n_ground)]
        for gid in ground_ids:
            save(render_ground(sig, rng), shard_path(split, "ground", gid))
        rows[split]["ground"].append([lid, " ".join(ground_ids)])
        text_id = _hex_id(seed, "text", lid)
        text_path = root / shard_path(split, "text", text_id)
        text_path.parent.mkdir(parents=True, exist_ok=True)
        text_path.write_text(json.dumps(_article(lm), indent=1), encoding="utf-8")
        rows[split]["text"].append([lid, text_id])
        for d in range(distractors_per_landmark):
            lat, lon = destination(lm.lat, lm.lon, float(rng.uniform(0, 360)), float(rng.uniform(0.5, 60.0)))
            tile_id = _hex_id(seed, "index", lid, d)
            save(render_satellite(_signature(seed * 104729 + i * 97 + d, lat, lon), rng), shard_path("index", "satellite", tile_id))
            index_rows.append([tile_id, round(lat, 6), round(lon, 6), 2020])

    def write_csv(rel: str, header: list[str], data: list[list]) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(data)

    for split, tables in rows.items():
        write_csv(f"{split}/mml_{split}.csv", ["landmark_id", "CommonsCategory", "lat", "lon"], tables["landmarks"])
        write_csv(f"{split}/mml_{split}_ground.csv", ["landmark_id", "images"], tables["ground"])
        write_csv(f"{split}/mml_{split}_satellite.csv", ["landmark_id", "images"], tables["satellite"])
        write_csv(f"{split}/mml_{split}_text.csv", ["landmark_id", "json"], tables["text"])
    write_csv("index/mml_index_satellite.csv", ["images", "lat", "lon", "year"], index_rows)
    write_csv("additional_info/mmlandmarks.csv",
              ["landmark_id", "lat", "lon", "bbox", "category", "hierarchical_category", "WikipediaPage", "QID"], info)
    # A new photo of a known landmark, listed in no CSV: what a user would ask about.
    first = LANDMARKS[0]
    render_ground(_signature(seed * 7919, first.lat, first.lon, first.category), rng).save(root / DEMO_PHOTO, quality=92)
    return root

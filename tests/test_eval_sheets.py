"""Evaluation picture sheets: best and worst queries per configuration, with stored tiles from recorded roots."""

from __future__ import annotations

from PIL import Image

from known_world import DIM, NYC, code_vector
from mmgeo.evaluation.gallery import pick, write_gallery
from mmgeo.qdrant import EdgeStore, StoredPoint
from mmgeo.qdrant.schema import ROOTS_KEY, VectorIdentity, build_payload, ensure_collection, point_id


def _detail(config, photo, km_north, key, lid="1"):
    return {"config": config, "mode": "image", "photo": str(photo), "landmark_id": lid, "true_lat": NYC[0],
            "true_lon": NYC[1], "pred_lat": NYC[0] + km_north / 111.2, "pred_lon": NYC[1], "pred_key": key,
            "pred_name": None, "earth_radius_km": 6371.0}


def test_best_and_worst_per_configuration(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name, colour in (("true", (0, 200, 0)), ("wrong", (200, 0, 0)), ("q", (0, 0, 200))):
        Image.new("RGB", (64, 64), colour).save(root / f"{name}.png")
    store = EdgeStore(tmp_path / "store")
    ensure_collection(store, "satellite", VectorIdentity("image", "t", "t", DIM))
    for key, lid in (("true", "1"), ("wrong", "2")):
        payload = build_payload(key=key, modality="satellite", lat=NYC[0], lon=NYC[1], landmark_id=lid, source=f"{key}.png")
        store.upsert("mmgeo_satellite", [StoredPoint(point_id("mmgeo_satellite", key), payload, {"image": code_vector(1)})])
    store.set_metadata("mmgeo_satellite", {**store.get_metadata("mmgeo_satellite"), ROOTS_KEY: [str(root)]})
    details = [_detail("A", root / "q.png", km, "wrong" if km else "true") for km in (0, 500, 5, 50, 2000)]
    details += [_detail("B", root / "q.png", 1, "missing-key")]
    picked = pick(details, 2)
    assert [(tag, round(r["distance_km"])) for tag, r in picked[("image", "A")]] == \
        [("best", 0), ("best", 5), ("worst", 2000), ("worst", 500)]
    assert len(picked[("image", "B")]) == 1  # one query: best only, not repeated as worst
    paths = write_gallery(store, details, 2, tmp_path / "sheets")
    store.close()
    assert sorted(p.name for p in paths.values()) == ["gallery.html", "gallery_image_00.png", "gallery_image_01.png"]
    sheet = Image.open(paths["html"].parent / "gallery_image_00.png").convert("RGB")
    assert sheet.height > 4 * 128
    page = paths["html"].read_text()
    assert page.count("data:image/jpeg;base64,") == 4 * 3 + 2  # B's predicted tile has no file
    assert page.count("<b>worst: ") == 2 and page.count("<b>best: ") == 3

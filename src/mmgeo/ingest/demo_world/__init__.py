"""A small world in the MMLandmarks layout whose geography is learnable, generated offline for the demo
and the tests: real US landmark coordinates, procedurally drawn photos and tiles whose look varies
smoothly with location (:mod:`.look`), drawn by :mod:`.render`, written by :mod:`.world`."""

from mmgeo.ingest.demo_world.landmarks import LANDMARKS, Landmark
from mmgeo.ingest.demo_world.world import DEMO_PHOTO, WorldParams, held_out_views, make_demo_world, world_landmarks

__all__ = ["DEMO_PHOTO", "LANDMARKS", "Landmark", "WorldParams", "held_out_views", "make_demo_world", "world_landmarks"]

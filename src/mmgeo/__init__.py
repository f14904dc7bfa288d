"""mmgeo: two-stage image geolocation on a vector database.

Stage 1 (GeoCLIP) turns a ground photo into GPS hypotheses; stage 2 is a
geo-filtered vector search in Qdrant over satellite tiles, ground photos and
landmark texts, each stored with its location and H3 cells as payload.
"""

__version__ = "0.1.0"

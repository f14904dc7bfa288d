"""Ingest: read a dataset (manifest, MMLandmarks, precomputed embeddings), embed it and write it to a store."""

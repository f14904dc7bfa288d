"""Evaluation of mmgeo runs: metrics, predictions files and results tables.

- :mod:`mmgeo.evaluation.metrics`: geolocation accuracy, R@K, R@1 %, AP/mAP@K, per-landmark
  fusion and narrowing statistics, each docstring stating the exact definition.
- :mod:`mmgeo.evaluation.predictions`: read and validate a predictions file, and score it.
- :mod:`mmgeo.evaluation.report`: the results table as CSV, Markdown, JSON and PNG plots.
"""

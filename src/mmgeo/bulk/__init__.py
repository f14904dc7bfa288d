"""Many photos at once (``mmgeo-locate``): a folder, a glob or a manifest of queries → one predictions file.

:func:`~mmgeo.bulk.job.locate_many` yields one answer per query, each what ``mmgeo-search`` gives on that
query alone, with the photos decoded in prefetch workers and encoded, searched and ranked in batches;
:func:`~mmgeo.bulk.job.locate_to_file` writes them to a resumable, crash-safe predictions file
(:mod:`~mmgeo.bulk.output`) that ``mmgeo-eval`` scores as it is.
"""

"""What batch jobs share (``mmgeo-ingest``, ``mmgeo-locate``): where their model stage runs, in this process or on
Ray actors (:mod:`~mmgeo.pipeline.distributors`)."""

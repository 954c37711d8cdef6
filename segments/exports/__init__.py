"""Segment exports: export destinations (a configured loader) and segment exports (one run of a segment to a
destination, a Celery job with status, progress, counts, checkpoints and a log). Part of the `segments` app
(its models are imported by segments/models.py), kept in its own package."""

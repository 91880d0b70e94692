"""`cluster bench`: a multi-process HTTP load generator with merged HDR histograms.

Pure parts (no I/O): ``stats`` (histograms, tallies, summaries), ``schedule``
(open-loop pacing, stress steps, breaking point), ``mix`` (endpoints and their
weights). I/O: ``runner`` (one generator process), ``orchestrator`` (the
processes, progress, merge), ``report`` (tables, JSON) and ``plot``.
"""

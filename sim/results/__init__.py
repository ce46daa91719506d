"""Results of runs turned into what people read: plots (and, as they come, bench JSON files,
tables and timelines). Sits above :mod:`sim.simulation`; the metrics themselves are computed by
:mod:`sim.metrics` from a run's records."""

"""Results of runs turned into what people read: the ``vllm bench serve`` JSON of a point
(:mod:`sim.results.bench`), the results table and its warnings (:mod:`sim.results.table`) and
the plots (:mod:`sim.results.plots`, the per-replica plot of fleets :mod:`sim.results.fleet_plots`). Sits above :mod:`sim.simulation`; the metrics themselves
are computed by :mod:`sim.metrics` from a run's records."""

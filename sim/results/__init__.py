"""Results of runs turned into what people read: the ``vllm bench serve`` JSON of a point
(:mod:`sim.results.bench`), the results table and its warnings (:mod:`sim.results.table`), the
plots (:mod:`sim.results.plots`; fleets' per-replica plot :mod:`sim.results.fleet_plots`), and a run's timeline of every pass and request
(:mod:`sim.results.timeline`) with its Perfetto trace (:mod:`sim.results.perfetto`) and plots
(:mod:`sim.results.timeline_plots`). Sits above :mod:`sim.simulation`; the metrics themselves
are computed by :mod:`sim.metrics` from a run's records."""

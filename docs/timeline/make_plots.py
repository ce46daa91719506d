"""Regenerates the figures of docs/timeline.md: ``python docs/timeline/make_plots.py`` (from the
repository root). The seed benchmark at 20 closed-loop users, 400 requests; the KV figure is the
same point with vLLM's KV cache cut to 160 blocks (and max_model_len 512, so a request still fits)."""

from pathlib import Path

from sim import (
    load_scenario,
    plot_batch_and_step_time,
    plot_gantt,
    plot_kv_occupancy,
    plot_step_time_vs_batch,
    record_timeline,
    with_override,
)

HERE = Path(__file__).resolve().parent
scenario = load_scenario(HERE.parents[1] / "scenarios" / "seed_benchmark.yaml")
scenario = with_override(scenario, "sweep", None)
scenario = with_override(scenario, "workload.arrival.users", 20)
scenario = with_override(scenario, "workload.num_requests", 400)
timeline = record_timeline(scenario)
small = with_override(scenario, "servers.vllm.max_model_len", 512)
small = with_override(small, "servers.vllm.num_gpu_blocks_override", 160)
tight = record_timeline(small, servers=["vllm"])

figures = {
    "gantt": plot_gantt(timeline),
    "batch_step_time": plot_batch_and_step_time(timeline),
    "kv_occupancy_small_cache": plot_kv_occupancy(tight, window_s=(0.0, 5.0)),
    "step_time_vs_batch": plot_step_time_vs_batch(timeline),
}
for name, fig in figures.items():
    fig.savefig(HERE / f"{name}.png", dpi=100)
for s in (*timeline.servers, *tight.servers):
    m = s.result.metrics
    print(f"{s.server:10s} {s.label:27s} kv {s.kv_capacity:5d} {s.kv_unit:6s} passes {s.num_passes:6d} "
          f"out tok/s {m['output_throughput']:7.1f} mean batch {s.batch_size.mean():5.2f} "
          f"preemptions {int(s.passes['preemptions'].sum())} end {s.passes['end_s'][-1]:.1f} s")

"""Cross-check of the offload cost against two published llama.cpp runs (LOCAL_SERVERS.md §3.5)."""
from sim.catalog import get_hardware, get_model
from sim.engines import resolve_server
from sim.scenario.servers import LlamaCppSpec
from sim.shapes import BatchShape

d = BatchShape(num_decode_seqs=1, num_context_tokens=512)
def tps(model, hw, ngl):
    c = resolve_server(LlamaCppSpec(version="b7100", ctx_size=4096, parallel=1, kv_unified=False, n_gpu_layers=ngl), get_model(model), get_hardware(hw)).cost
    return 1 / c.step_time(d)
for hw in ("rtx-4090", "rtx-3090", "rtx-3060"):
    a, b = tps("qwen2.5-14b", hw, 48), tps("qwen2.5-14b", hw, 49)
    print(f"#11752 qwen2.5-14b q4_k_m {hw}: ngl48 {a:.1f} t/s, ngl49 {b:.1f} t/s, ratio {a/b:.2f} (published 34.74/71.6 = 0.49)")


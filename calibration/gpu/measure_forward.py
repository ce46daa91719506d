"""Measure forward-pass times of a Llama-shaped model with random weights on a CUDA GPU.

Not part of the simulator and not imported by it (PyTorch is no dependency of servesim): run it
on a machine with a GPU and PyTorch, then copy its output into ``calibration/data/gpu/``::

    python calibration/gpu/measure_forward.py --model llama-3.1-8b --hardware h100-sxm --out DIR

What is timed is one forward pass of the whole model, in bf16, as a serving engine runs it:
token embedding, per layer RMSNorm -> fused QKV GEMM -> rotary embedding -> attention over the
KV cache (new K/V written into it) -> output GEMM -> residual -> RMSNorm -> fused gate/up GEMM ->
SiLU*mul -> down GEMM -> residual, then the final norm, the LM head for the sampled positions
only (the last prompt token of each prompt, every decoding sequence) and a greedy argmax.
The GEMMs are cuBLAS through ``torch.matmul`` (as vLLM's unquantised linear layers are);
attention is PyTorch's scaled-dot-product attention (FlashAttention backend) for prompts, and
for decoding the faster of that and a batched-GEMM softmax attention per shape (vLLM uses
split-KV "flash-decoding" kernels for decode, which SDPA lacks for small batches). Each shape
is captured once as a CUDA graph (as vLLM captures its decode passes) and the graph is replayed:
the time is the GPU's, with no Python launch overhead and no engine CPU work (scheduling,
detokenising). This stand-in engine is fitted as vLLM's pass (calibration/data/gpu/README.md
says why, and what that assumes).

Shapes: decode passes (B sequences at context L), single prompts of P tokens, several prompts in
one pass, and mixed passes (one prompt chunk + B decodes), as ``prefill_tokens,
num_prefill_seqs, prefill_context_tokens, decode_seqs, context_tokens`` with the median of
``--reps`` replays in ``step_s`` (plus min/max and the eager-mode time for reference).
The model's shape comes from servesim's catalog (``sim/catalog/models.yaml``), read as YAML.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def model_shape(model_id: str) -> dict:
    for m in yaml.safe_load((REPO / "sim/catalog/models.yaml").read_text()):
        if m["id"] == model_id:
            return m
    raise SystemExit(f"model {model_id!r} not in sim/catalog/models.yaml")


def shapes(max_kv_tokens: int, quick: bool) -> list[tuple[str, int, int, int, int]]:
    """(suite, prompt tokens per seq, prompt seqs, decode seqs, context per decode seq)."""
    out = []
    contexts = (256, 1024, 4096, 16384)
    batches = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
    for ctx in contexts:
        for b in batches:
            if b * (ctx + 1) <= max_kv_tokens:
                out.append(("decode", 0, 0, b, ctx))
    for p in (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384):
        out.append(("prefill", p, 1, 0, 0))
    for p, n in ((128, 16), (256, 8), (512, 4), (1024, 4), (2048, 2)):
        out.append(("multi_prefill", p, n, 0, 0))
    for p, b, ctx in ((512, 16, 1024), (512, 64, 1024), (512, 128, 1024), (256, 64, 2048),
                      (2048, 32, 1024), (1024, 256, 256)):
        out.append(("mixed", p, 1, b, ctx))
    out = [s for s in out if s[3] * (s[4] + 1) + s[1] * s[2] <= max_kv_tokens]
    if quick:
        out = [s for s in out if s[1] * max(s[2], 1) <= 64 and s[3] <= 4 and s[4] <= 256]
    return out


class Model:
    """Random bf16 weights in the model's shape, with a flat KV buffer per layer."""

    def __init__(self, torch, cfg: dict, device: str, max_kv_tokens: int, dtype) -> None:
        self.t = torch
        h, nh, nkv, d = cfg["hidden_size"], cfg["num_heads"], cfg["num_kv_heads"], cfg["head_dim"]
        ff, vocab, layers = cfg["intermediate_size"], cfg["vocab_size"], cfg["num_layers"]
        self.h, self.nh, self.nkv, self.d, self.ff = h, nh, nkv, d, ff
        self.g = nh // nkv
        self.dtype = dtype
        gen = torch.Generator(device=device).manual_seed(0)

        def w(*shape):
            x = torch.empty(*shape, dtype=dtype, device=device)
            return x.normal_(0.0, 0.02, generator=gen)

        self.embed = w(vocab, h)
        self.lm_head = self.embed if cfg.get("tie_word_embeddings") else w(vocab, h)
        self.layers = [
            {"n1": torch.ones(h, dtype=dtype, device=device), "qkv": w(h, (nh + 2 * nkv) * d),
                 "o": w(nh * d, h), "n2": torch.ones(h, dtype=dtype, device=device),
                 "gu": w(h, 2 * ff), "down": w(ff, h)}
            for _ in range(layers)
        ]
        self.norm = torch.ones(h, dtype=dtype, device=device)
        self.kv = [(torch.empty(max_kv_tokens * nkv * d, dtype=dtype, device=device).normal_(generator=gen),
                    torch.empty(max_kv_tokens * nkv * d, dtype=dtype, device=device).normal_(generator=gen))
                   for _ in range(layers)]
        self.max_kv = max_kv_tokens
        from torch.nn.attention import SDPBackend
        self.backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
        self.gqa_native = self._probe_gqa(device)
        self.dtype = dtype
        self.params = sum(x.numel() for x in (self.embed, self.norm)) + sum(
            x.numel() for lw in self.layers for x in lw.values())
        if self.lm_head is not self.embed:
            self.params += self.lm_head.numel()

    def _probe_gqa(self, device) -> bool:
        """Whether the fused SDPA kernels take grouped K/V directly (else K/V are repeated)."""
        t = self.t
        q = t.randn(1, self.nh, 64, self.d, dtype=self.dtype, device=device)
        kv = t.randn(1, self.nkv, 64, self.d, dtype=self.dtype, device=device)
        try:
            with t.nn.attention.sdpa_kernel(self.backends):
                t.nn.functional.scaled_dot_product_attention(q, kv, kv, is_causal=True, enable_gqa=True)
            return True
        except RuntimeError:
            return False

    def rms(self, x, weight):
        return self.t.nn.functional.rms_norm(x, (x.shape[-1],), weight, 1e-5)

    def rope(self, x, cos, sin):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return self.t.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)

    def forward(self, ids, p, n, b, ctx, decode_attn):
        """One pass: n prompts of p tokens (no cached past), then b decodes at context ctx."""
        t, F = self.t, self.t.nn.functional
        T = p * n + b
        x = self.embed[ids]
        pos = t.arange(T, device=ids.device, dtype=t.float32)
        freqs = pos[:, None] * (1e-4 ** (t.arange(self.d // 2, device=ids.device) / (self.d // 2)))[None]
        cos, sin = freqs.cos().to(self.dtype)[:, None, :], freqs.sin().to(self.dtype)[:, None, :]
        pn = p * n
        for lw, (kbuf, vbuf) in zip(self.layers, self.kv, strict=True):
            y = self.rms(x, lw["n1"]) @ lw["qkv"]
            q = y[:, : self.nh * self.d].view(T, self.nh, self.d)
            k = y[:, self.nh * self.d: (self.nh + self.nkv) * self.d].view(T, self.nkv, self.d)
            v = y[:, (self.nh + self.nkv) * self.d:].view(T, self.nkv, self.d)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            outs = []
            if pn:
                qp = q[:pn].view(n, p, self.nh, self.d).transpose(1, 2)
                kp = k[:pn].view(n, p, self.nkv, self.d).transpose(1, 2)
                vp = v[:pn].view(n, p, self.nkv, self.d).transpose(1, 2)
                # Prompt K/V go into the cache (after the decode region), as reshape_and_cache does.
                base = b * (ctx + 1) * self.nkv * self.d
                kbuf[base: base + pn * self.nkv * self.d].view(pn, self.nkv, self.d).copy_(k[:pn])
                vbuf[base: base + pn * self.nkv * self.d].view(pn, self.nkv, self.d).copy_(v[:pn])
                if not self.gqa_native:
                    kp, vp = kp.repeat_interleave(self.g, dim=1), vp.repeat_interleave(self.g, dim=1)
                with self.t.nn.attention.sdpa_kernel(self.backends):
                    o = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True, enable_gqa=self.gqa_native)
                outs.append(o.transpose(1, 2).reshape(pn, self.nh * self.d))
            if b:
                L = ctx + 1
                kc = kbuf[: b * self.nkv * L * self.d].view(b, self.nkv, L, self.d)
                vc = vbuf[: b * self.nkv * L * self.d].view(b, self.nkv, L, self.d)
                kc[:, :, ctx, :] = k[pn:]
                vc[:, :, ctx, :] = v[pn:]
                qd = q[pn:].view(b, self.nkv, self.g, self.d)  # GQA: a group's heads share K/V
                if decode_attn == "sdpa":
                    with self.t.nn.attention.sdpa_kernel(self.backends):
                        o = F.scaled_dot_product_attention(qd, kc, vc)
                else:
                    s = (qd @ kc.transpose(-1, -2)).float() * (self.d ** -0.5)
                    o = s.softmax(-1).to(self.dtype) @ vc
                outs.append(o.reshape(b, self.nh * self.d))
            a = outs[0] if len(outs) == 1 else t.cat(outs)
            x = x + a @ lw["o"]
            gu = self.rms(x, lw["n2"]) @ lw["gu"]
            x = x + (F.silu(gu[:, : self.ff]) * gu[:, self.ff:]) @ lw["down"]
        last = t.arange(p - 1, pn, p, device=ids.device) if pn else t.empty(0, dtype=t.long, device=ids.device)
        sampled = t.cat((last, t.arange(pn, T, device=ids.device)))
        logits = self.rms(x[sampled], self.norm) @ self.lm_head.T
        return logits.argmax(-1)


def time_graph(torch, fn, reps: int):
    """Median, min, max seconds of `reps` replays of `fn` captured as a CUDA graph."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    del graph
    times.sort()
    return times[len(times) // 2], times[0], times[-1]


def time_eager(torch, fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / reps


def ceilings(torch) -> dict:
    """The two ceilings measured once: device-to-device copy bandwidth and a large bf16 GEMM."""
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(10):
        b.copy_(a)
    e1.record()
    e1.synchronize()
    copy_bw = 2 * n * 10 / (e0.elapsed_time(e1) / 1e3)
    del a, b
    m = 8192
    x = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    y = torch.randn(m, m, dtype=torch.bfloat16, device="cuda")
    for _ in range(3):
        x @ y
    torch.cuda.synchronize()
    e0.record()
    for _ in range(10):
        x @ y
    e1.record()
    e1.synchronize()
    gemm = 2 * m**3 * 10 / (e0.elapsed_time(e1) / 1e3)
    return {"copy_bytes_per_s_read_plus_write": round(copy_bw), "bf16_gemm_8192_flops_per_s": round(gemm)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--hardware", required=True, help="servesim catalog id of the GPU, e.g. h100-sxm")
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--max-kv-tokens", type=int, default=131072 + 16384)
    ap.add_argument("--quick", action="store_true", help="a few tiny shapes (smoke test)")
    ap.add_argument("--layers", type=int, default=None, help="override the layer count (smoke test)")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()

    import torch

    cfg = dict(model_shape(args.model))
    if args.layers:
        cfg["num_layers"] = args.layers
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"forward_{args.model}_{args.hardware}_bf16"
    cuda = args.device == "cuda"
    meta = {
        "model": args.model, "hardware": args.hardware, "engine": "vllm", "weight_format": "bf16",
        "threads": None,
        "source": "python " + " ".join(sys.argv) + f" on {platform.node()}",
        "software": f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}), cuBLAS GEMMs, SDPA attention, CUDA graphs",
        "date": dt.date.today().isoformat(),
        "notes": "",
    }
    info = {"python": sys.version.split()[0], "platform": platform.platform()}
    if cuda:
        prop = torch.cuda.get_device_properties(0)
        info.update(gpu=prop.name, sms=prop.multi_processor_count, memory_bytes=prop.total_memory,
                    **ceilings(torch))
    print(json.dumps(info), flush=True)
    model = Model(torch, cfg, args.device, args.max_kv_tokens, torch.bfloat16)
    print(f"params {model.params / 1e9:.3f} B", flush=True)
    rows = []
    fields = ["suite", "prefill_tokens", "num_prefill_seqs", "prefill_context_tokens", "decode_seqs",
              "context_tokens", "step_s", "step_min_s", "step_max_s", "eager_s", "decode_attention",
              "num_steps"]
    csv_path = out / f"{stem}.csv"
    with csv_path.open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields)
        wr.writeheader()
        for suite, p, n, b, ctx in shapes(args.max_kv_tokens, args.quick):
            try:
                ids = torch.randint(0, cfg["vocab_size"], (p * n + b,), device=args.device)
                best = None
                for attn in (("sdpa", "bmm") if b else ("sdpa",)):
                    def fn(attn=attn, ids=ids, p=p, n=n, b=b, ctx=ctx):
                        with torch.no_grad():
                            return model.forward(ids, p, n, b, ctx, attn)
                    if cuda:
                        med, lo, hi = time_graph(torch, fn, args.reps)
                    else:
                        t0 = time.perf_counter()
                        fn()
                        med = lo = hi = time.perf_counter() - t0
                    if best is None or med < best[0]:
                        best = (med, lo, hi, attn, fn)
                med, lo, hi, attn, fn = best
                eager = time_eager(torch, fn, 3) if cuda else med
                row = {"suite": suite, "prefill_tokens": p * n, "num_prefill_seqs": n, "prefill_context_tokens": 0,
                           "decode_seqs": b, "context_tokens": b * ctx, "step_s": f"{med:.6e}", "step_min_s": f"{lo:.6e}",
                           "step_max_s": f"{hi:.6e}", "eager_s": f"{eager:.6e}", "decode_attention": attn if b else "",
                           "num_steps": args.reps}
                wr.writerow(row)
                f.flush()
                rows.append(row)
                print(f"{suite:14s} p={p:6d} n={n:3d} b={b:4d} ctx={ctx:6d}  {med * 1e3:9.3f} ms "
                      f"[{lo * 1e3:.3f}-{hi * 1e3:.3f}] eager {eager * 1e3:9.3f} ms  {attn}", flush=True)
            except Exception:  # noqa: BLE001 -- one failing shape must not lose the others
                traceback.print_exc()
            finally:
                if cuda:
                    torch.cuda.empty_cache()
    meta["notes"] = (
        f"stand-in engine: whole forward pass of random-weight {args.model} ({model.params / 1e9:.3f} B "
        f"parameters) in bf16 replayed as one CUDA graph (median of {args.reps} replays), no engine CPU work; "
        "see calibration/data/README.md (gpu/)"
    )
    meta["machine"] = info
    (out / f"{stem}.meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, width=100))
    print(f"wrote {csv_path} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

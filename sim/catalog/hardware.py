"""Accelerators: memory, DRAM bandwidth and dense peak throughput per dtype of a GPU, Apple SoC or CPU."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from sim.catalog.base import CatalogError, Dtype, HardwareKind, _Spec

# --------------------------------------------------------------------------------------------
# Hardware
# --------------------------------------------------------------------------------------------

_DTYPE_ALIASES: Mapping[str, str] = MappingProxyType(
    {
        "float32": "fp32",
        "f32": "fp32",
        "float16": "fp16",
        "half": "fp16",
        "f16": "fp16",
        "bfloat16": "bf16",
        "float8": "fp8",
        "fp8_e4m3": "fp8",
        "fp8_e5m2": "fp8",
    }
)

_PEAK_FALLBACKS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "fp32": ("fp32",),
        "fp16": ("fp16", "bf16"),
        "bf16": ("bf16", "fp16"),
        "fp8": ("fp8", "fp16", "bf16"),
        "int8": ("int8", "fp16", "bf16"),
    }
)
"""Order in which :meth:`HardwareSpec.peak_flops` tries dtypes when one is not listed."""


class HardwareSpec(_Spec):
    """Peak capabilities of one device (a GPU, an Apple SoC or a CPU socket / VM)."""

    id: str = Field(min_length=1)
    """Catalog id, lower case with dashes, e.g. ``"h100-sxm"``."""
    name: str = Field(min_length=1)
    """Marketing name, e.g. ``"NVIDIA H100 SXM5 80GB"``."""
    kind: HardwareKind
    """Broad class of the device."""
    vendor: str = Field(min_length=1)
    """Maker of the device, e.g. ``"NVIDIA"``, ``"AMD"``, ``"Apple"``."""
    memory_gib: PositiveFloat
    """Device memory in GiB (Apple: unified memory of the stated configuration; CPU: RAM).

    Marketed GPU capacities ("80GB", "24GB") are binary sizes and are taken as GiB."""
    bandwidth_gb_s: PositiveFloat
    """Peak DRAM bandwidth in GB/s (1e9 bytes per second)."""
    tflops: dict[Dtype, PositiveFloat] = Field(min_length=1)
    """Dense (no 2:4 sparsity) peak TFLOP/s per dtype (TOPS for int8).

    Tensor-core figures with fp32 accumulation where the datasheet distinguishes (GeForce
    fp16/bf16/fp8 with fp32 accumulate run at half the fp16-accumulate rate); ``fp32`` is the
    non-tensor (CUDA-core / vector) rate, not TF32."""
    cores: PositiveInt | None = None
    """CPU cores (kind ``cpu``), GPU SMs / compute units, or Apple GPU cores."""
    source: str = Field(min_length=1)
    """Datasheet URL(s) the numbers come from."""
    notes: str = ""
    """Derivations, assumptions and figures that are uncertain."""
    aliases: tuple[str, ...] = ()
    """Other names accepted by :func:`get_hardware`."""
    count: PositiveInt = 1
    """Devices of this kind in the server (a node: ``8x h100-sxm``); memory, bandwidth and peaks
    above are per device. Engines use one unless told to spread a model (tensor/pipeline
    parallelism, llama.cpp's layer split)."""
    interconnect: str | None = None
    """Link between the devices (an id of ``sim/catalog/interconnects.yaml``, e.g.
    ``nvlink4-nvswitch``, ``pcie5-nop2p``); default: the link that GPU has in its usual server."""
    host: str | None = None
    """The machine's CPU (a catalog ``cpu`` id): where llama.cpp / Ollama run the layers they do not
    offload to the GPU; default by GPU kind (``sim.offload.DEFAULT_HOSTS``)."""

    @model_validator(mode="after")
    def _cpu_has_cores(self) -> HardwareSpec:
        """Require a core count for CPUs, whose peaks are per-core rates times cores."""
        if self.kind == "cpu" and self.cores is None:
            raise ValueError(f"hardware {self.id!r} is a cpu but gives no 'cores'")
        return self

    @property
    def bandwidth_bytes_per_s(self) -> float:
        """Peak DRAM bandwidth in bytes per second."""
        return self.bandwidth_gb_s * 1e9

    @property
    def memory_bytes(self) -> float:
        """Device memory in bytes."""
        return self.memory_gib * 2**30

    def peak_flops(self, dtype: str) -> float:
        """Dense peak throughput for ``dtype`` in FLOP/s (OP/s for int8).

        A dtype missing from :attr:`tflops` falls back, in order: ``fp16`` -> ``bf16``;
        ``bf16`` -> ``fp16``; ``fp8`` -> ``fp16`` -> ``bf16`` (fp8 weights are upcast on GPUs
        without fp8 tensor cores, as vLLM's W8A16 Marlin kernels do); ``int8`` -> ``fp16`` ->
        ``bf16`` (no int8 matrix unit: dequantise to fp16). ``fp32`` never falls back.

        Args:
            dtype: One of ``fp32``, ``fp16``, ``bf16``, ``fp8``, ``int8`` (or an obvious
                spelling such as ``float16`` / ``bfloat16``), case-insensitive.

        Returns:
            Peak operations per second.

        Raises:
            CatalogError: If the dtype is unknown or neither it nor a fallback is listed.
        """
        key = _canonical_dtype(dtype)
        for candidate in _PEAK_FALLBACKS[key]:
            if candidate in self.tflops:
                return self.tflops[candidate] * 1e12
        raise CatalogError(
            f"hardware {self.id!r} lists no peak for dtype {dtype!r} (tried "
            f"{', '.join(_PEAK_FALLBACKS[key])}); it lists {', '.join(self.tflops)}. "
            f"Add a '{key}' entry to its 'tflops' in hardware.yaml."
        )


def _canonical_dtype(dtype: str) -> str:
    """Map a dtype spelling to one of the keys of :data:`_PEAK_FALLBACKS`."""
    key = dtype.strip().lower()
    key = _DTYPE_ALIASES.get(key, key)
    if key not in _PEAK_FALLBACKS:
        raise CatalogError(
            f"unknown dtype {dtype!r}; valid dtypes: {', '.join(_PEAK_FALLBACKS)}"
        )
    return key



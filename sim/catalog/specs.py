"""Typed specs of accelerators, transformer models and weight formats, and their loaders.

The roofline cost model needs three kinds of facts, each kept in a YAML file next to this
module and validated into a frozen pydantic model on first use:

* ``hardware.yaml`` -> :class:`HardwareSpec`: memory, DRAM bandwidth and dense peak
  throughput per dtype of a GPU, Apple SoC or CPU.
* ``models.yaml`` -> :class:`ModelSpec`: the shape of a decoder-only transformer, taken from
  its Hugging Face ``config.json``; parameter counts, KV-cache bytes and attention FLOPs are
  derived from it.
* ``formats.yaml`` -> :class:`WeightFormat`: how many bits a weight format spends per weight
  and which tensor-core dtype bounds its GEMMs.

Lookups are case-insensitive and ignore ``-``, ``_``, ``:`` and spaces, so ``"RTX4090"``,
``"rtx_4090"`` and ``"rtx-4090"`` name the same card and Ollama tags such as
``"llama3.1:8b"`` name the catalog model ``llama-3.1-8b``.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

__all__ = [
    "KV_DTYPE_BYTES",
    "CatalogError",
    "Dtype",
    "HardwareKind",
    "HardwareSpec",
    "ModelSpec",
    "WeightFormat",
    "get_format",
    "get_hardware",
    "get_model",
    "kv_dtype_bytes",
    "list_formats",
    "list_hardware",
    "list_models",
    "model_from_hf_config",
]

Dtype = Literal["fp32", "fp16", "bf16", "fp8", "int8"]
"""Dtypes that a peak-throughput figure may be given for."""

HardwareKind = Literal[
    "datacenter_gpu", "consumer_gpu", "workstation_gpu", "laptop_gpu", "apple_silicon", "cpu"
]
"""Broad class of a device."""

Engine = Literal["vllm", "llama.cpp", "ollama"]
"""Serving engines the simulator models."""


class CatalogError(ValueError):
    """An unknown catalog id, an invalid catalog entry or an unreadable model config."""


class _Spec(BaseModel):
    """Base of all catalog models: strict keys, immutable, fields documented in place."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


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


# --------------------------------------------------------------------------------------------
# Weight formats
# --------------------------------------------------------------------------------------------


class WeightFormat(_Spec):
    """How a checkpoint stores its weights, and which tensor-core dtype runs its GEMMs."""

    name: str = Field(min_length=1)
    """User-facing format name, e.g. ``"q4_k_m"`` or ``"awq-int4"``."""
    family: Literal["native", "awq", "gptq", "gguf", "fp8"]
    """Quantisation scheme the format belongs to."""
    bits_per_weight: PositiveFloat
    """Effective bits per transformer-layer weight, including scales and zero points."""
    embedding_bits_per_weight: PositiveFloat
    """Effective bits per weight of the token (and learned position) embedding table."""
    lm_head_bits_per_weight: PositiveFloat
    """Effective bits per weight of the output projection (lm_head / GGUF ``output.weight``).

    A tied embedding is stored once, at this width (llama.cpp quantises a tied
    ``token_embd`` with the output tensor's type)."""
    compute_dtype: Literal["fp16", "bf16", "fp8", "int8"]
    """Dtype whose tensor-core peak bounds the GEMMs (W4A16 -> fp16; GGUF quants on CUDA use
    llama.cpp's int8 MMQ kernels -> int8)."""
    engines: tuple[Engine, ...] = Field(min_length=1)
    """Engines that load this format."""
    source: str = Field(min_length=1)
    """URL(s) documenting the storage layout and the bits-per-weight arithmetic."""
    notes: str = ""
    """The bits-per-weight arithmetic and its caveats."""
    aliases: tuple[str, ...] = ()
    """Other names accepted by :func:`get_format`."""


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


class ModelSpec(_Spec):
    """Shape of a decoder-only transformer, as given by its Hugging Face ``config.json``."""

    id: str = Field(min_length=1)
    """Catalog id, lower case with dashes, e.g. ``"llama-3.1-8b"``."""
    hf_name: str = Field(min_length=1)
    """Hugging Face repository, e.g. ``"meta-llama/Llama-3.1-8B-Instruct"``."""
    family: str = Field(min_length=1)
    """Architecture (the config's ``model_type``): ``llama``, ``qwen2``, ``mistral``, ..."""
    num_layers: PositiveInt
    """Transformer blocks (``num_hidden_layers``)."""
    hidden_size: PositiveInt
    """Width of the residual stream (``hidden_size``)."""
    num_heads: PositiveInt
    """Query heads per layer (``num_attention_heads``)."""
    num_kv_heads: PositiveInt
    """Key/value heads per layer (``num_key_value_heads``; equals ``num_heads`` for MHA)."""
    head_dim: PositiveInt
    """Width of one attention head (``head_dim``, else ``hidden_size // num_heads``)."""
    intermediate_size: PositiveInt
    """Width of the MLP hidden layer (``intermediate_size``; OPT: ``ffn_dim``)."""
    vocab_size: PositiveInt
    """Rows of the embedding table and of the lm_head."""
    tie_word_embeddings: bool
    """Whether the lm_head reuses the embedding matrix (stored once)."""
    attention_bias: bool = False
    """Whether the q/k/v projections carry biases (Qwen2)."""
    gated_mlp: bool = True
    """Gated MLP with gate, up and down matrices (SwiGLU/GeGLU); False: up and down only (OPT)."""
    linear_bias: bool = False
    """Whether every linear of a block (q, k, v, o and the MLP) carries a bias (OPT)."""
    norm_kind: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    """RMSNorm (a weight vector) or LayerNorm (weight and bias vectors)."""
    norms_per_layer: PositiveInt = 2
    """Norm modules per block: 2 for pre-norm blocks, 4 for Gemma 2 (pre and post norms)."""
    learned_position_embeddings: NonNegativeInt = 0
    """Rows of a learned absolute position table (OPT: max positions + 2); 0 with RoPE."""
    max_position_embeddings: PositiveInt
    """Longest context the model was configured for."""
    source: str = Field(min_length=1)
    """URL (or path) of the ``config.json`` the numbers come from."""
    notes: str = ""
    """Anything worth knowing about the entry."""
    aliases: tuple[str, ...] = ()
    """Other names accepted by :func:`get_model` (e.g. Ollama tags)."""

    @model_validator(mode="after")
    def _heads_group_evenly(self) -> ModelSpec:
        """Require query heads to split evenly over KV heads (grouped-query attention)."""
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"model {self.id!r}: num_heads={self.num_heads} is not a multiple of "
                f"num_kv_heads={self.num_kv_heads}"
            )
        return self

    @property
    def _q_width(self) -> int:
        """Output width of the query projection."""
        return self.num_heads * self.head_dim

    @property
    def _kv_width(self) -> int:
        """Output width of the key (or value) projection."""
        return self.num_kv_heads * self.head_dim

    @property
    def _matmul_params_per_layer(self) -> int:
        """GEMM weights of one block: q, k, v, o and the MLP matrices."""
        attention = 2 * self.hidden_size * (self._q_width + self._kv_width)
        mlp_matrices = 3 if self.gated_mlp else 2
        return attention + mlp_matrices * self.hidden_size * self.intermediate_size

    @property
    def _bias_params_per_layer(self) -> int:
        """Bias vectors of one block."""
        total = 0
        if self.attention_bias or self.linear_bias:
            total += self._q_width + 2 * self._kv_width
        if self.linear_bias:
            mlp_in = (2 if self.gated_mlp else 1) * self.intermediate_size
            total += self.hidden_size + mlp_in + self.hidden_size
        return total

    @property
    def _params_per_norm(self) -> int:
        """Parameters of one norm module."""
        return (2 if self.norm_kind == "layernorm" else 1) * self.hidden_size

    @property
    def num_layer_params(self) -> int:
        """All parameters of the transformer blocks (matmuls, biases, norms)."""
        per_layer = (
            self._matmul_params_per_layer
            + self._bias_params_per_layer
            + self.norms_per_layer * self._params_per_norm
        )
        return self.num_layers * per_layer

    @property
    def num_layer_matmul_params(self) -> int:
        """Per-token GEMM weights of all blocks (q, k, v, o, gate, up, down); no embedding/head."""
        return self.num_layers * self._matmul_params_per_layer

    @property
    def num_lm_head_params(self) -> int:
        """Weights of the output projection, ``vocab * hidden`` (the embedding if tied)."""
        return self.vocab_size * self.hidden_size

    @property
    def num_embedding_params(self) -> int:
        """Token embedding table plus any learned position table."""
        return (self.vocab_size + self.learned_position_embeddings) * self.hidden_size

    @property
    def num_params(self) -> int:
        """Total parameters: embeddings, blocks, final norm and the lm_head if untied."""
        untied_head = 0 if self.tie_word_embeddings else self.num_lm_head_params
        return (
            self.num_embedding_params
            + self.num_layer_params
            + self._params_per_norm
            + untied_head
        )

    def kv_bytes_per_token(self, bytes_per_element: float) -> float:
        """KV-cache bytes one token occupies across all layers.

        Args:
            bytes_per_element: Bytes per cached element (see :func:`kv_dtype_bytes`).

        Returns:
            ``2 * num_layers * num_kv_heads * head_dim * bytes_per_element``.
        """
        return 2 * self.num_layers * self._kv_width * bytes_per_element

    @property
    def attention_flops_per_pair(self) -> float:
        """FLOPs of QK^T and PV for one (query, key) pair, summed over layers."""
        return 4.0 * self.num_layers * self._q_width

    def weight_bytes(self, fmt: WeightFormat) -> float:
        """Bytes of all weights when stored in ``fmt``.

        Block weights and the final norm use ``fmt.bits_per_weight``; the token (and any
        position) embedding uses ``fmt.embedding_bits_per_weight`` and the lm_head
        ``fmt.lm_head_bits_per_weight``. A tied embedding is counted once, at the lm_head
        width.

        Args:
            fmt: The weight format.

        Returns:
            Size of the weights in bytes.
        """
        body = (self.num_layer_params + self._params_per_norm) * fmt.bits_per_weight
        positions = self.learned_position_embeddings * self.hidden_size
        embedding = positions * fmt.embedding_bits_per_weight
        head = self.num_lm_head_params * fmt.lm_head_bits_per_weight
        if not self.tie_word_embeddings:
            embedding += self.num_lm_head_params * fmt.embedding_bits_per_weight
        return (body + embedding + head) / 8


# --------------------------------------------------------------------------------------------
# KV-cache dtypes
# --------------------------------------------------------------------------------------------

KV_DTYPE_BYTES: Mapping[str, float] = MappingProxyType(
    {
        "auto": 2.0,
        "fp16": 2.0,
        "bf16": 2.0,
        "f16": 2.0,
        "f32": 4.0,
        "fp32": 4.0,
        "fp8": 1.0,
        "fp8_e4m3": 1.0,
        "fp8_e5m2": 1.0,
        "q8_0": 34 / 32,
        "q4_0": 18 / 32,
        "q4_1": 20 / 32,
        "q5_0": 22 / 32,
        "q5_1": 24 / 32,
    }
)
"""Bytes per cached K/V element for vLLM ``--kv-cache-dtype`` and llama.cpp ``--cache-type-k/v``.

``auto`` is vLLM's default (the model dtype, 2 bytes for bf16/fp16 checkpoints). GGUF block
types store 32 elements per block plus scales: ``q8_0`` = 32 int8 + one fp16 scale = 34 bytes,
``q4_0`` = 16 bytes of nibbles + fp16 scale = 18, ``q4_1``/``q5_0``/``q5_1`` = 20/22/24.
Read-only."""


def kv_dtype_bytes(name: str) -> float:
    """Bytes per cached K/V element for a KV-cache dtype name.

    Args:
        name: A key of :data:`KV_DTYPE_BYTES`, case-insensitive (``-`` is read as ``_``).

    Returns:
        Bytes per element.

    Raises:
        CatalogError: If the name is unknown; the message lists the valid names.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in KV_DTYPE_BYTES:
        raise CatalogError(
            f"unknown KV-cache dtype {name!r}; valid choices: {', '.join(KV_DTYPE_BYTES)}"
        )
    return KV_DTYPE_BYTES[key]


# --------------------------------------------------------------------------------------------
# Loading and lookup
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    """One loaded catalog file: its entries in file order and a lookup index."""

    what: str
    """Singular noun for messages: ``hardware``, ``model`` or ``format``."""
    entries: tuple[Any, ...]
    """Validated specs in file order."""
    index: Mapping[str, Any]
    """Normalised id / alias -> spec."""


_TABLES: Mapping[str, tuple[str, type[_Spec], str]] = MappingProxyType(
    {
        "hardware": ("hardware.yaml", HardwareSpec, "id"),
        "model": ("models.yaml", ModelSpec, "id"),
        "format": ("formats.yaml", WeightFormat, "name"),
    }
)
"""Catalog kind -> (file name, spec class, name of the id field)."""


def _normalize(name: str) -> str:
    """Lookup key of a name: lower case without spaces, ``-``, ``_`` or ``:``."""
    return re.sub(r"[\s\-_:]+", "", name.strip().lower())


def _lookup_names(spec: Any, id_field: str) -> list[str]:
    """Names a spec answers to: its id, its aliases and, for models, its HF repository."""
    names = [getattr(spec, id_field), *spec.aliases]
    if isinstance(spec, ModelSpec):
        names += [spec.hf_name, spec.hf_name.rsplit("/", 1)[-1]]
    return names


def _validate_entries(filename: str, cls: type[_Spec], raw: Any) -> tuple[Any, ...]:
    """Validate the list of mappings read from a catalog file."""
    if not isinstance(raw, list):
        raise CatalogError(f"{filename}: expected a YAML list of entries, got {type(raw)}")
    entries = []
    for position, item in enumerate(raw):
        try:
            entries.append(cls.model_validate(item))
        except ValidationError as exc:
            label = item.get("id", item.get("name")) if isinstance(item, dict) else None
            message = f"{filename}: entry #{position} ({label}) is invalid: {exc}"
            raise CatalogError(message) from exc
    return tuple(entries)


def _build_index(filename: str, entries: tuple[Any, ...], id_field: str) -> Mapping[str, Any]:
    """Map every normalised name to its spec, rejecting names that collide."""
    index: dict[str, Any] = {}
    for spec in entries:
        for name in _lookup_names(spec, id_field):
            key = _normalize(name)
            other = index.setdefault(key, spec)
            if other is not spec:
                raise CatalogError(
                    f"{filename}: name {name!r} of {getattr(spec, id_field)!r} collides with "
                    f"{getattr(other, id_field)!r}; rename one or drop the alias"
                )
    return MappingProxyType(index)


@lru_cache(maxsize=None)
def _table(kind: str) -> _Table:
    """Read, validate and index one catalog YAML file (cached; the files are read-only)."""
    filename, cls, id_field = _TABLES[kind]
    text = files("sim.catalog").joinpath(filename).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    entries = _validate_entries(filename, cls, document)
    return _Table(kind, entries, _build_index(filename, entries, id_field))


def _get(kind: str, name: str) -> Any:
    """Look up ``name`` in the ``kind`` catalog or raise a helpful :class:`CatalogError`."""
    table = _table(kind)
    spec = table.index.get(_normalize(name))
    if spec is not None:
        return spec
    raise CatalogError(_unknown_message(table, kind, name))


def _unknown_message(table: _Table, kind: str, name: str) -> str:
    """Error text for an unknown name: close matches, then every valid id."""
    id_field = _TABLES[kind][2]
    ids = [getattr(spec, id_field) for spec in table.entries]
    close = difflib.get_close_matches(_normalize(name), list(table.index), n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(getattr(table.index[key], id_field) for key in close))
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    extra = (
        " Or build a spec from a Hugging Face config.json with model_from_hf_config()."
        if kind == "model"
        else f" Or add an entry to sim/catalog/{_TABLES[kind][0]}."
    )
    return f"unknown {kind} {name!r}.{hint} Valid ids: {', '.join(ids)}.{extra}"


def get_hardware(id: str) -> HardwareSpec:  # noqa: A002 - the public API names it ``id``
    """Hardware spec by id or alias (case-insensitive).

    Raises:
        CatalogError: If unknown; the message lists close matches and all valid ids.
    """
    return _get("hardware", id)


def list_hardware() -> list[HardwareSpec]:
    """All hardware specs, in catalog order."""
    return list(_table("hardware").entries)


def get_model(id: str) -> ModelSpec:  # noqa: A002 - the public API names it ``id``
    """Model spec by id, alias, Ollama tag or Hugging Face name (case-insensitive).

    Raises:
        CatalogError: If unknown; the message lists close matches and all valid ids.
    """
    return _get("model", id)


def list_models() -> list[ModelSpec]:
    """All model specs, in catalog order."""
    return list(_table("model").entries)


def get_format(name: str) -> WeightFormat:
    """Weight format by name or alias (case-insensitive).

    Raises:
        CatalogError: If unknown; the message lists close matches and all valid names.
    """
    return _get("format", name)


def list_formats() -> list[WeightFormat]:
    """All weight formats, in catalog order."""
    return list(_table("format").entries)


# --------------------------------------------------------------------------------------------
# Hugging Face config.json
# --------------------------------------------------------------------------------------------

_TIED_BY_DEFAULT = frozenset({"gemma", "gemma2", "opt"})
"""``model_type`` values whose config class defaults ``tie_word_embeddings`` to True."""

_HF_FIX = (
    "pass the path of a Hugging Face config.json "
    "(https://huggingface.co/<org>/<model>/resolve/main/config.json)"
)


def _read_hf_config(path: Path) -> dict[str, Any]:
    """Parse a config.json, unwrapping a multimodal ``text_config`` if present."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"model config {str(path)!r} does not exist; {_HF_FIX}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        message = f"model config {str(path)!r} is not readable JSON ({exc}); {_HF_FIX}"
        raise CatalogError(message) from exc
    if not isinstance(config, dict):
        raise CatalogError(f"model config {str(path)!r} is not a JSON object; {_HF_FIX}")
    if "num_hidden_layers" not in config and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], "model_type": config.get("model_type", "")}
    return config


def _require(config: Mapping[str, Any], path: Path, key: str) -> Any:
    """Value of a mandatory config key, or a CatalogError naming the file and the key."""
    if key not in config or config[key] is None:
        raise CatalogError(
            f"model config {str(path)!r} lacks required key {key!r}; add it (see the model's "
            f"config.json on Hugging Face) or {_HF_FIX}"
        )
    return config[key]


def _default_id(config: Mapping[str, Any], path: Path) -> str:
    """Catalog id for a config: last part of ``_name_or_path`` or the parent directory."""
    name = str(config.get("_name_or_path") or "").rstrip("/")
    base = name.rsplit("/", 1)[-1] if name else (path.parent.name or path.stem)
    return base.lower()


def _hf_fields(config: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """ModelSpec fields read from a config (architecture keys only)."""
    model_type = str(config.get("model_type") or "unknown").lower()
    hidden = _require(config, path, "hidden_size")
    heads = _require(config, path, "num_attention_heads")
    is_opt = model_type == "opt"
    fields: dict[str, Any] = {
        "family": model_type,
        "num_layers": _require(config, path, "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": config.get("num_key_value_heads") or heads,
        "head_dim": config.get("head_dim") or hidden // heads,
        "intermediate_size": _require(config, path, "ffn_dim" if is_opt else "intermediate_size"),
        "vocab_size": _require(config, path, "vocab_size"),
        "tie_word_embeddings": config.get("tie_word_embeddings", model_type in _TIED_BY_DEFAULT),
        "attention_bias": model_type == "qwen2" or bool(config.get("attention_bias", False)),
        "max_position_embeddings": _require(config, path, "max_position_embeddings"),
        "norms_per_layer": 4 if model_type in {"gemma2", "gemma3"} else 2,
    }
    if is_opt:
        fields |= {
            "gated_mlp": False,
            "linear_bias": bool(config.get("enable_bias", True)),
            "norm_kind": "layernorm",
            "learned_position_embeddings": fields["max_position_embeddings"] + 2,
        }
    return fields


def model_from_hf_config(path: str | Path, id: str | None = None) -> ModelSpec:  # noqa: A002
    """Build a :class:`ModelSpec` from a Hugging Face ``config.json``.

    Understands the keys of Llama, Qwen2, Mistral, Gemma 2, Phi-3 and OPT configs:
    ``num_key_value_heads`` defaults to the head count, ``head_dim`` to
    ``hidden_size // num_attention_heads``, ``tie_word_embeddings`` to the config class's
    default (True for Gemma and OPT, else False); Qwen2 always has q/k/v biases; Gemma 2 has
    four norms per block; OPT reads ``ffn_dim`` and has biases, LayerNorms and learned
    positions. A multimodal config's ``text_config`` is used when present.

    Args:
        path: Path of the ``config.json``.
        id: Catalog id to give the spec; default: the last part of ``_name_or_path``, else
            the name of the directory holding the file, lower-cased.

    Returns:
        The model spec (``source`` is the file path).

    Raises:
        CatalogError: If the file is missing or not JSON, a required key is absent, or the
            values are inconsistent; the message names the file, the key and the fix.
    """
    path = Path(path)
    config = _read_hf_config(path)
    spec_id = id or _default_id(config, path)
    fields = _hf_fields(config, path)
    try:
        return ModelSpec(
            id=spec_id,
            hf_name=str(config.get("_name_or_path") or spec_id),
            source=str(path),
            **fields,
        )
    except ValidationError as exc:
        raise CatalogError(f"model config {str(path)!r} has invalid values: {exc}") from exc

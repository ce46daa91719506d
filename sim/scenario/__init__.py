"""Scenario files: the schema, split by section, and loading.

A scenario names a model, a piece of hardware, a workload and one or more servers, and
optionally a sweep over one dotted field. Relative paths inside a scenario (traces, length
tables, Hugging Face configs) are resolved against the scenario file's folder.

* :mod:`sim.scenario.base` -- ``Spec`` (``extra="forbid"``, every field documented) and ``ScenarioError``;
* :mod:`sim.scenario.workload` -- lengths, arrivals, the workload;
* :mod:`sim.scenario.servers` -- server specs (engines and bare architectures); their cost specs in
  :mod:`sim.scenario.costs`, their models in :mod:`sim.scenario.local`, speculative decoding in
  :mod:`sim.scenario.speculative`;
* :mod:`sim.scenario.document` -- the scenario itself, its sweep and SLO;
* :mod:`sim.scenario.io` -- reading YAML/TOML, validation messages, ``--set`` overrides.
"""

from __future__ import annotations

from sim.scenario.base import ScenarioError, Spec
from sim.scenario.costs import (
    ConstantCostSpec,
    CostSpec,
    FrontendSpec,
    LinearCostSpec,
    RooflineCostSpec,
    SampledServiceSpec,
    ServiceDistribution,
    SpeedNoiseSpec,
)
from sim.scenario.document import HfConfigModel, Scenario, SloSpec, SweepSpec
from sim.scenario.fleet import FleetSpec, KvTransferSpec, ServerEntry, is_fleet
from sim.scenario.io import (
    format_validation_error,
    load_scenario,
    parse_scenario,
    parse_value,
    with_override,
)
from sim.scenario.local import (
    LlamaSwapSpec,
    OllamaModelSpec,
    SwapGroupSpec,
    SwapMatrixSpec,
    SwapModelSpec,
)
from sim.scenario.router import RouterSpec
from sim.scenario.servers import (
    LlamaCppSpec,
    OllamaSpec,
    PagedBatchingSpec,
    SerialDecodeSpec,
    ServerCommon,
    ServerSpec,
    SingleQueueSpec,
    VllmSpec,
)
from sim.scenario.speculative import SpeculativeConfig
from sim.scenario.workload import (
    ArrivalSpec,
    ClosedLoopArrival,
    ConstantArrival,
    EmpiricalLength,
    FixedLength,
    GammaArrival,
    LengthSpec,
    LogNormalLength,
    Phase,
    PhasesArrival,
    PoissonArrival,
    RampArrival,
    ThinkTime,
    TraceArrival,
    UniformLength,
    WorkloadSpec,
)

__all__ = [
    "ArrivalSpec",
    "ClosedLoopArrival",
    "ConstantArrival",
    "ConstantCostSpec",
    "CostSpec",
    "EmpiricalLength",
    "FixedLength",
    "FleetSpec",
    "FrontendSpec",
    "GammaArrival",
    "HfConfigModel",
    "KvTransferSpec",
    "LengthSpec",
    "LinearCostSpec",
    "LlamaCppSpec",
    "LlamaSwapSpec",
    "LogNormalLength",
    "OllamaModelSpec",
    "OllamaSpec",
    "PagedBatchingSpec",
    "Phase",
    "PhasesArrival",
    "PoissonArrival",
    "RampArrival",
    "RooflineCostSpec",
    "RouterSpec",
    "SampledServiceSpec",
    "Scenario",
    "ScenarioError",
    "SerialDecodeSpec",
    "ServerCommon",
    "ServerEntry",
    "ServerSpec",
    "ServiceDistribution",
    "SingleQueueSpec",
    "SloSpec",
    "Spec",
    "SpeculativeConfig",
    "SpeedNoiseSpec",
    "SwapGroupSpec",
    "SwapMatrixSpec",
    "SwapModelSpec",
    "SweepSpec",
    "ThinkTime",
    "TraceArrival",
    "UniformLength",
    "VllmSpec",
    "WorkloadSpec",
    "format_validation_error",
    "is_fleet",
    "load_scenario",
    "parse_scenario",
    "parse_value",
    "with_override",
]

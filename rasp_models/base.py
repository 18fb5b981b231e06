"""A studied program: its RASP source, an independent Python reference, and its compiled model."""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any, Callable, Optional

import numpy as np

from tracr.compiler import compiling
from tracr.rasp import rasp

BOS = "BOS"


@dataclasses.dataclass(frozen=True)
class Sharpness:
    """The compiler's sharpness knobs (larger = closer to exact, stiffer weights).

    Attributes:
        mlp_exactness: minimum ramp slope of discretising MLPs.
        softmax_coldness: attention score of a selected key (BOS gets half of it).
        relu_margin: distance every ReLU keeps from its kink (0: tracr's MLPs, many units exactly at the kink; a
            positive margin computes the same function with every unit on or off by at least this much).
    """

    mlp_exactness: float = 100.0
    softmax_coldness: float = 100.0
    relu_margin: float = 0.0

    def __post_init__(self):
        for name in ("mlp_exactness", "softmax_coldness"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        v = self.relu_margin
        if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ValueError(f"relu_margin must be a finite number >= 0, got {v!r}")


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """Everything an experiment needs about one program.

    Attributes:
        name: registry key.
        description: one line.
        make_program: builds the RASP program (fresh expressions each call).
        vocab: token values.
        max_seq_len: longest input (BOS excluded).
        reference: plain-Python output per position (None where undefined), independent of RASP.
        numerical: whether the output is numerical.
        causal: compile with a causal mask.
        family: the registered program this is a variant of (e.g. a size sweep); selects its data generator.
    """

    name: str
    description: str
    make_program: Callable[[], rasp.SOp]
    vocab: frozenset
    max_seq_len: int
    reference: Callable[[list], list]
    numerical: bool = False
    causal: bool = False
    family: str = ""

    def check_tokens(self, tokens: list) -> None:
        """Raises ValueError for an unknown token or a sequence that is too long or empty."""
        if not 1 <= len(tokens) <= self.max_seq_len:
            raise ValueError(f"{self.name}: length {len(tokens)} outside 1..{self.max_seq_len}")
        unknown = [t for t in tokens if t not in self.vocab]
        if unknown:
            raise ValueError(f"{self.name}: tokens {unknown!r} not in the vocabulary {sorted(self.vocab, key=str)}")

    def compile(self, sharpness: Sharpness = Sharpness()):
        """The compiled model at `sharpness` (cached per spec and sharpness)."""
        return _compile(self, sharpness)


@functools.lru_cache(maxsize=None)
def _compile(spec: ProgramSpec, sharpness: Sharpness):
    return compiling.compile_rasp_to_model(spec.make_program(), set(spec.vocab), spec.max_seq_len,
                                           causal=spec.causal, compiler_bos=BOS,
                                           mlp_exactness=sharpness.mlp_exactness,
                                           softmax_coldness=sharpness.softmax_coldness,
                                           relu_margin=sharpness.relu_margin)


def count_primitives(program: rasp.SOp) -> dict:
    """Number of RASP expressions by kind (Map, SequenceMap, Aggregate, SelectorWidth, Select, ...)."""
    seen, stack, counts = set(), [program], collections.Counter()
    while stack:
        e = stack.pop()
        if e.label in seen:
            continue
        seen.add(e.label)
        counts[type(e).__name__] += 1
        stack.extend(e.children)
    return dict(counts)


def descriptors(spec: ProgramSpec, model: Optional[Any] = None) -> dict:
    """Simple complexity descriptors of a compiled program."""
    model = model or spec.compile()
    prims = count_primitives(spec.make_program())
    cfg = model.model_config
    leaves = [np.asarray(v) for d in model.params.values() for v in d.values()]
    heads_used = len([c for c in model.components if c.kind == "attn"])
    return {
        "primitives": sum(v for k, v in prims.items() if k not in ("TokensType", "IndicesType")),
        "primitives_by_kind": prims,
        "layers": cfg.num_layers,
        "heads": heads_used,
        "max_heads_per_layer": cfg.num_heads,
        "mlp_width": cfg.mlp_hidden_size,
        "residual_width": len(model.residual_labels),
        "num_params": int(sum(a.size for a in leaves)),
        "num_nonzero": int(sum(np.count_nonzero(a) for a in leaves)),
    }


def module_api(spec: ProgramSpec):
    """The module-level `compile()` and `BOS` every program module exposes, bound to its spec."""

    def compile_model():
        """The compiled model (cached)."""
        return spec.compile()

    return compile_model, BOS

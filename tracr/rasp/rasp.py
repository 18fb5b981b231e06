"""RASP: a small language of sequence operations, embedded in Python.

A program is a DAG of expressions. S-ops (`SOp`) map an input sequence to a sequence of the same length;
selectors map it to a boolean matrix `M[query][key]`. Calling an expression on a list evaluates it with the
default evaluator: `program(["a", "b"])`.

This is an independent implementation of the API of DeepMind's tracr (`tracr.rasp.rasp`). Differences that
are deliberate:
  * every expression gets a fresh id when it is created *or copied* (`named`, `annotated`), so two
    differently annotated copies never share a label;
  * selector combinators that cannot be simplified are kept as objects the evaluator understands; the compiler
    rejects them with a `NotImplementedError` naming the expression.
"""

from __future__ import annotations

import abc
import copy
import enum
import itertools
import numbers
from typing import Any, Callable, Mapping, Optional, Sequence

Value = Any
_ids = itertools.count(1)

# ---------------------------------------------------------------------------------------------------------------
# Annotations


class Encoding(enum.Enum):
    """How an S-op is laid out in the residual stream."""

    CATEGORICAL = "categorical"  # one-hot, one dimension per value
    NUMERICAL = "numerical"  # one scalar dimension


_ENCODING = "encoding"
_NAME = "name"


class RASPExpr(abc.ABC):
    """Base class of every RASP expression."""

    _default_name = "expr"

    def __init__(self):
        self._annotations: dict[str, Any] = {}
        self._unique_id = next(_ids)

    # -- identity and annotations --------------------------------------------------------------------------
    @property
    def unique_id(self) -> int:
        return self._unique_id

    @property
    def annotations(self) -> Mapping[str, Any]:
        """Read-only view of the annotations, with defaults filled in."""
        merged = {_NAME: self._default_name, _ENCODING: Encoding.CATEGORICAL}
        merged.update(self._annotations)
        return merged

    @property
    def name(self) -> str:
        return self.annotations[_NAME]

    @property
    def label(self) -> str:
        """Graph-node id and residual-direction name: `name_id`, unique per object."""
        return f"{self.name}_{self._unique_id}"

    @property
    @abc.abstractmethod
    def children(self) -> Sequence["RASPExpr"]:
        """The expressions this one reads."""

    def annotated(self, **annotations: Any) -> "RASPExpr":
        """Returns a shallow copy with merged annotations and a fresh id."""
        new = copy.copy(self)
        new._annotations = {**self._annotations, **annotations}
        new._unique_id = next(_ids)
        return new

    def named(self, name: str) -> "RASPExpr":
        """Returns a copy carrying `name` (its label becomes `name_<id>`)."""
        return self.annotated(name=name)

    def __call__(self, xs: Sequence[Value]):
        return evaluate(self, xs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label})"


def annotate(expr: RASPExpr, **annotations: Any) -> RASPExpr:
    """Functional form of `expr.annotated(...)`."""
    return expr.annotated(**annotations)


def get_encoding(expr: RASPExpr) -> Encoding:
    return expr.annotations[_ENCODING]


def numerical(sop: "SOp") -> "SOp":
    """Marks an S-op as numerical (one scalar residual dimension)."""
    return sop.annotated(encoding=Encoding.NUMERICAL)


def categorical(sop: "SOp") -> "SOp":
    """Marks an S-op as categorical (one-hot)."""
    return sop.annotated(encoding=Encoding.CATEGORICAL)


def is_numerical(expr: RASPExpr) -> bool:
    return get_encoding(expr) == Encoding.NUMERICAL


def is_categorical(expr: RASPExpr) -> bool:
    return get_encoding(expr) == Encoding.CATEGORICAL


# ---------------------------------------------------------------------------------------------------------------
# S-ops


def _lift(fn: Callable[[Value, Value], Value], this: "SOp", other: Any, reverse: bool = False) -> "SOp":
    """Operator sugar: an S-op combined with an S-op gives a SequenceMap, with a constant a Map."""
    if isinstance(other, SOp):
        return SequenceMap((lambda x, y: fn(y, x)) if reverse else fn, this, other)
    if reverse:
        return Map(lambda x: fn(other, x), this)
    return Map(lambda x: fn(x, other), this)


class SOp(RASPExpr):
    """A sequence operation: sequence in, sequence of the same length out."""

    # Comparison and arithmetic sugar. `==` builds a Map, so S-ops are not hashable.
    def __lt__(self, other):
        return _lift(lambda x, y: x < y, self, other)

    def __le__(self, other):
        return _lift(lambda x, y: x <= y, self, other)

    def __eq__(self, other):  # type: ignore[override]
        return _lift(lambda x, y: x == y, self, other)

    def __ne__(self, other):  # type: ignore[override]
        return _lift(lambda x, y: x != y, self, other)

    def __gt__(self, other):
        return _lift(lambda x, y: x > y, self, other)

    def __ge__(self, other):
        return _lift(lambda x, y: x >= y, self, other)

    def __add__(self, other):
        return _lift(lambda x, y: x + y, self, other)

    def __radd__(self, other):
        return _lift(lambda x, y: x + y, self, other, reverse=True)

    def __sub__(self, other):
        return _lift(lambda x, y: x - y, self, other)

    def __rsub__(self, other):
        return _lift(lambda x, y: x - y, self, other, reverse=True)

    def __mul__(self, other):
        return _lift(lambda x, y: x * y, self, other)

    def __rmul__(self, other):
        return _lift(lambda x, y: x * y, self, other, reverse=True)

    def __truediv__(self, other):
        return _lift(lambda x, y: x / y, self, other)

    def __rtruediv__(self, other):
        return _lift(lambda x, y: x / y, self, other, reverse=True)

    def __invert__(self):
        return Map(lambda x: not x, self)

    def __and__(self, other):
        return _lift(lambda x, y: x and y, self, other)

    def __rand__(self, other):
        return _lift(lambda x, y: x and y, self, other, reverse=True)

    def __or__(self, other):
        return _lift(lambda x, y: x or y, self, other)

    def __ror__(self, other):
        return _lift(lambda x, y: x or y, self, other, reverse=True)

    __hash__ = None  # type: ignore[assignment]


class _Primitive(SOp):
    """tokens, indices, length: labels are constants."""

    _primitive_label = ""

    @property
    def children(self):
        return []

    @property
    def label(self) -> str:
        return self._primitive_label


class TokensType(_Primitive):
    """The input tokens."""

    _primitive_label = "tokens"
    _default_name = "tokens"


class IndicesType(_Primitive):
    """The position of each token, 0..n-1."""

    _primitive_label = "indices"
    _default_name = "indices"


class LengthType(_Primitive):
    """The length n at every position. Evaluates, but is not compilable (use `lib.make_length()`)."""

    _primitive_label = "length"
    _default_name = "length"


tokens = TokensType()
indices = IndicesType()
length = LengthType()


class Map(SOp):
    """Elementwise `f(x)`. `None` passes through without calling `f`.

    With `simplify=True` (default), a Map of a Map is fused into one Map over the inner Map's input (the inner
    Map's annotations are dropped).
    """

    _default_name = "map"

    def __init__(self, f: Callable[[Value], Value], inner: SOp, simplify: bool = True):
        super().__init__()
        if not isinstance(inner, SOp):
            raise TypeError(f"Map expects an SOp, got {inner!r}")
        if simplify and isinstance(inner, Map):
            inner_f, g = inner.f, f
            f = lambda x: g(inner_f(x))  # noqa: E731
            inner = inner.inner
        self.f = f
        self.inner = inner

    @property
    def children(self):
        return [self.inner]


class SequenceMap(SOp):
    """Elementwise `f(x, y)` over two S-ops; `None` if either input is None."""

    _default_name = "sequence_map"

    def __init__(self, f: Callable[[Value, Value], Value], fst: SOp, snd: SOp):
        super().__init__()
        if not (isinstance(fst, SOp) and isinstance(snd, SOp)):
            raise TypeError("SequenceMap expects two SOps")
        self.f = f
        self.fst = fst
        self.snd = snd

    @property
    def children(self):
        return [self.fst, self.snd]


class LinearSequenceMap(SequenceMap):
    """`fst_fac * x + snd_fac * y`, compiled exactly for numerical S-ops."""

    _default_name = "linear_sequence_map"

    def __init__(self, fst: SOp, snd: SOp, fst_fac: float, snd_fac: float):
        super().__init__(lambda x, y: fst_fac * x + snd_fac * y, fst, snd)
        self.fst_fac = fst_fac
        self.snd_fac = snd_fac


class Full(SOp):
    """The constant `fill` at every position. Only usable inside selector simplification."""

    _default_name = "full"

    def __init__(self, fill: Value):
        super().__init__()
        self.fill = fill

    @property
    def children(self):
        return []


class ConstantSOp(SOp):
    """A fixed sequence, for tests. Not compilable."""

    _default_name = "constant_sop"

    def __init__(self, value: Sequence[Value], check_length: bool = True):
        super().__init__()
        self.value = list(value)
        self.check_length = check_length

    @property
    def children(self):
        return []


# ---------------------------------------------------------------------------------------------------------------
# Selectors


class Comparison(enum.Enum):
    """Predicates `f(key, query)` for `Select`. The key comes first."""

    EQ = "EQ"
    LT = "LT"
    LEQ = "LEQ"
    GT = "GT"
    GEQ = "GEQ"
    NEQ = "NEQ"
    TRUE = "TRUE"
    FALSE = "FALSE"

    def __call__(self, key: Value, query: Value) -> bool:
        if key is None:
            raise ValueError("key is None!")
        if query is None:
            raise ValueError("query is None!")
        return _COMPARISONS[self](key, query)


_COMPARISONS: dict[Comparison, Callable[[Value, Value], bool]] = {
    Comparison.EQ: lambda k, q: k == q,
    Comparison.LT: lambda k, q: k < q,
    Comparison.LEQ: lambda k, q: k <= q,
    Comparison.GT: lambda k, q: k > q,
    Comparison.GEQ: lambda k, q: k >= q,
    Comparison.NEQ: lambda k, q: k != q,
    Comparison.TRUE: lambda k, q: True,
    Comparison.FALSE: lambda k, q: False,
}


class Selector(RASPExpr):
    """A boolean attention pattern `M[query][key]`."""

    def __and__(self, other: "Selector") -> "Selector":
        return selector_and(self, other)

    def __or__(self, other: "Selector") -> "Selector":
        return selector_or(self, other)

    def __invert__(self) -> "Selector":
        return selector_not(self)


class Select(Selector):
    """`M[q][k] = predicate(keys[k], queries[q])`."""

    _default_name = "select"

    def __init__(self, keys: SOp, queries: SOp, predicate: Callable[[Value, Value], bool]):
        super().__init__()
        if not (isinstance(keys, SOp) and isinstance(queries, SOp)):
            raise TypeError("Select expects SOps for keys and queries")
        self.keys = keys
        self.queries = queries
        self.predicate = predicate

    @property
    def children(self):
        return [self.keys, self.queries]


class ConstantSelector(Selector):
    """A fixed boolean matrix, for tests. Not compilable."""

    _default_name = "constant_selector"

    def __init__(self, value: Sequence[Sequence[bool]], check_length: bool = True):
        super().__init__()
        self.value = [list(r) for r in value]
        self.check_length = check_length

    @property
    def children(self):
        return []


class SelectorNot(Selector):
    _default_name = "selector_not"

    def __init__(self, inner: Selector):
        super().__init__()
        self.inner = inner

    @property
    def children(self):
        return [self.inner]


class _SelectorBinary(Selector):
    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        self.fst = fst
        self.snd = snd

    @property
    def children(self):
        return [self.fst, self.snd]


class SelectorAnd(_SelectorBinary):
    _default_name = "selector_and"


class SelectorOr(_SelectorBinary):
    _default_name = "selector_or"


def selector_not(sel: Selector) -> Selector:
    """`~sel`; a Select becomes a Select with the negated predicate."""
    if isinstance(sel, Select):
        pred = sel.predicate
        return Select(sel.keys, sel.queries, lambda k, q: not pred(k, q))
    return SelectorNot(sel)


def _combine(fst: Selector, snd: Selector, op: Callable[[bool, bool], bool]) -> Optional[Selector]:
    """Fuses two Selects into one when their keys and queries agree (or one side is a `Full`)."""
    if not (isinstance(fst, Select) and isinstance(snd, Select)):
        return None
    p1, p2 = fst.predicate, snd.predicate

    def pick(a: SOp, b: SOp) -> Optional[tuple[SOp, Callable, Callable]]:
        # Returns the shared S-op and two extractors mapping its value to each side's value.
        if a is b:
            return a, (lambda v: v), (lambda v: v)
        if isinstance(a, Full):
            return b, (lambda v, c=a.fill: c), (lambda v: v)
        if isinstance(b, Full):
            return a, (lambda v: v), (lambda v, c=b.fill: c)
        return None

    keys, queries = pick(fst.keys, snd.keys), pick(fst.queries, snd.queries)
    if keys is None or queries is None:
        return None
    k_sop, k1, k2 = keys
    q_sop, q1, q2 = queries
    return Select(k_sop, q_sop, lambda k, q: op(p1(k1(k), q1(q)), p2(k2(k), q2(q))))


def selector_and(fst: Selector, snd: Selector) -> Selector:
    return _combine(fst, snd, lambda a, b: a and b) or SelectorAnd(fst, snd)


def selector_or(fst: Selector, snd: Selector) -> Selector:
    return _combine(fst, snd, lambda a, b: a or b) or SelectorOr(fst, snd)


# ---------------------------------------------------------------------------------------------------------------
# Selector-based S-ops


class SelectorWidth(SOp):
    """The number of selected keys for each query."""

    _default_name = "selector_width"

    def __init__(self, selector: Selector):
        super().__init__()
        if not isinstance(selector, Selector):
            raise TypeError("SelectorWidth expects a Selector")
        self.selector = selector

    @property
    def children(self):
        return [self.selector]


class Aggregate(SOp):
    """For each query: the default if no key is selected, the value if one is, the mean if several are."""

    _default_name = "aggregate"

    def __init__(self, selector: Selector, sop: SOp, default: Value = None):
        super().__init__()
        if not isinstance(selector, Selector) or not isinstance(sop, SOp):
            raise TypeError("Aggregate expects a Selector and an SOp")
        self.selector = selector
        self.sop = sop
        self.default = default

    @property
    def children(self):
        return [self.selector, self.sop]


# ---------------------------------------------------------------------------------------------------------------
# Evaluation


def _mean(values: list[Value], default: Value) -> Value:
    if not values:
        return default
    if len(values) == 1:
        return values[0]
    if all(isinstance(v, numbers.Number) and not isinstance(v, complex) for v in values):
        return sum(values) / len(values)
    raise ValueError(f"Cannot average non-numeric values {values!r}: categorical Aggregate selected several keys")


class DefaultRASPEvaluator:
    """Evaluates an expression on an input list, memoising shared sub-expressions.

    Args:
        causal: if True, every selector matrix is ANDed with a lower-triangular mask (a query sees keys at
            positions <= its own).
    """

    def __init__(self, causal: bool = False):
        self.causal = causal

    def evaluate(self, expr: RASPExpr, xs: Sequence[Value]):
        xs = list(xs)
        memo: dict[int, Any] = {}

        def ev(e: RASPExpr):
            key = id(e)
            if key not in memo:
                memo[key] = self._eval(e, xs, ev)
            return memo[key]

        return ev(expr)

    def _eval(self, e: RASPExpr, xs: list, ev: Callable):  # noqa: C901 - one case per expression type
        n = len(xs)
        if isinstance(e, TokensType):
            return list(xs)
        if isinstance(e, IndicesType):
            return list(range(n))
        if isinstance(e, LengthType):
            return [n] * n
        if isinstance(e, Map):
            return [None if x is None else e.f(x) for x in ev(e.inner)]
        if isinstance(e, SequenceMap):
            return [None if (x is None or y is None) else e.f(x, y) for x, y in zip(ev(e.fst), ev(e.snd))]
        if isinstance(e, Full):
            return [e.fill] * n
        if isinstance(e, ConstantSOp):
            if e.check_length and len(e.value) != n:
                raise ValueError(f"ConstantSOp of length {len(e.value)} evaluated on input of length {n}")
            return list(e.value)
        if isinstance(e, Select):
            keys, queries = ev(e.keys), ev(e.queries)
            mat = [[bool(e.predicate(k, q)) for k in keys] for q in queries]
            return self._mask(mat)
        if isinstance(e, ConstantSelector):
            if e.check_length and len(e.value) != n:
                raise ValueError(f"ConstantSelector of size {len(e.value)} evaluated on input of length {n}")
            return self._mask(e.value)
        if isinstance(e, SelectorNot):
            return self._mask([[not v for v in row] for row in ev(e.inner)])
        if isinstance(e, (SelectorAnd, SelectorOr)):
            op = (lambda a, b: a and b) if isinstance(e, SelectorAnd) else (lambda a, b: a or b)
            a, b = ev(e.fst), ev(e.snd)
            return self._mask([[op(x, y) for x, y in zip(ra, rb)] for ra, rb in zip(a, b)])
        if isinstance(e, SelectorWidth):
            return [sum(row) for row in ev(e.selector)]
        if isinstance(e, Aggregate):
            mat, vals = ev(e.selector), ev(e.sop)
            return [_mean([v for v, s in zip(vals, row) if s], e.default) for row in mat]
        raise NotImplementedError(f"No evaluation rule for {e!r}")

    def _mask(self, mat: list[list[bool]]) -> list[list[bool]]:
        if not self.causal:
            return mat
        return [[v and k <= q for k, v in enumerate(row)] for q, row in enumerate(mat)]


def evaluate(expr: RASPExpr, xs: Sequence[Value]):
    """Evaluates `expr` on `xs` with the default (non-causal) evaluator."""
    return DefaultRASPEvaluator().evaluate(expr, xs)

"""Search spaces from the command line: ``--param NAME=SPEC``, made into Ray Tune's.

NAME is a training option, as ``fmnist train`` takes it (``batch-size`` or ``batch_size``): any
field of :class:`~fmnist.training.TrainConfig` except ``threads``, which follows each trial's CPU
allotment, and ``seed``: a seed is no hyperparameter, and the best of several would be the
luckiest (``--seeds`` trains every point once per seed and ranks their means). SPEC is one of::

    a,b,c               a grid: every value is tried, and grids combine as a full grid
                        (one value fixes the option for every trial)
    uniform:LO:HI       drawn per trial, uniformly          (float options)
    loguniform:LO:HI    drawn per trial, uniform in log     (float options, 0 < LO)
    randint:LO:HI       drawn per trial, both ends included (integer options)
    choice:a,b,c        drawn per trial from these values

Values are typed as the option is (``lr`` a float, ``batch_size`` an integer, ``nesterov`` a
boolean); a malformed SPEC or an unknown NAME is a :class:`~fmnist.errors.UsageError` naming
the flag. Nothing here imports Ray until :meth:`ParamSpec.to_tune` is called.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from fmnist.errors import UsageError

RANDOM_KINDS = ("uniform", "loguniform", "randint", "choice")
# Never searched: what each says instead.
NOT_SEARCHABLE = {"threads": "set by --cpus-per-trial",
                  "seed": "to train every point over several seeds and rank their means, use --seeds S,S,..."}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One ``--param``: ``name`` a TrainConfig field, ``kind`` ``"grid"`` or one of RANDOM_KINDS.

    ``values`` holds a grid's or a choice's typed values; ``low``/``high`` a range's ends.
    ``text`` is the argument as given, for messages and for the sweep's own record.
    """

    name: str
    kind: str
    text: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None

    @property
    def random(self) -> bool:
        return self.kind != "grid"

    def to_tune(self) -> Any:
        """The Tune search-space entry: a constant, ``tune.grid_search`` or a sampler."""
        from ray import tune

        if self.kind == "grid":
            return self.values[0] if len(self.values) == 1 else tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "randint":
            return tune.randint(int(self.low), int(self.high) + 1)  # Tune's upper end is excluded
        return (tune.uniform if self.kind == "uniform" else tune.loguniform)(self.low, self.high)

    def possible_max(self) -> Any:
        """The largest value a trial may get (a grid's or choice's largest, a range's upper end)."""
        return max(self.values) if self.values else self.high


def option_types() -> dict[str, type]:
    """Searchable option -> its value type (int, float, bool or str), from TrainConfig's fields."""
    from fmnist.training import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    out = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name in NOT_SEARCHABLE:
            continue
        hint = hints[field.name]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            hint = next(t for t in typing.get_args(hint) if t is not type(None))
        out[field.name] = hint
    return out


def parse_param(arg: str, types_: dict[str, type] | None = None) -> ParamSpec:
    """``"lr=loguniform:1e-4:1e-2"`` -> a :class:`ParamSpec`; a :class:`UsageError` naming ``--param``."""
    types_ = types_ if types_ is not None else option_types()
    flag = f"--param {arg}"
    name, sep, spec = arg.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not spec.strip():
        raise UsageError(f"{flag}: expected NAME=SPEC, e.g. lr=0.01,0.001 or lr=loguniform:1e-4:1e-2")
    if name not in types_:
        hint = f" ({NOT_SEARCHABLE[name]})" if name in NOT_SEARCHABLE else ""
        raise UsageError(f"{flag}: {name!r} is not a training option that can be searched{hint}; "
                         f"choose from {', '.join(sorted(types_))}")
    kind_type = types_[name]
    head, colon, rest = spec.strip().partition(":")
    if colon and head in RANDOM_KINDS:
        if head == "choice":
            return ParamSpec(name, "choice", arg, values=_values(flag, rest, kind_type))
        low, high = _range(flag, head, rest, kind_type)
        return ParamSpec(name, head, arg, low=low, high=high)
    if colon:
        raise UsageError(f"{flag}: unknown SPEC {head!r}; use a,b,c (a grid) or "
                         f"{', '.join(k + ':...' for k in RANDOM_KINDS)}")
    return ParamSpec(name, "grid", arg, values=_values(flag, spec, kind_type))


def parse_params(args: Iterable[str]) -> list[ParamSpec]:
    """Every ``--param``; a name given twice is a usage error."""
    types_ = option_types()
    specs, seen = [], set()
    for arg in args:
        spec = parse_param(arg, types_)
        if spec.name in seen:
            raise UsageError(f"--param {arg}: {spec.name} is given twice; give each option once")
        seen.add(spec.name)
        specs.append(spec)
    return specs


def param_space(specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Tune's ``param_space``: option name -> constant, grid or sampler."""
    return {s.name: s.to_tune() for s in specs}


def grid_size(specs: Sequence[ParamSpec]) -> int:
    """Points in the full grid of the grid SPECs (1 when there are none)."""
    return math.prod(len(s.values) for s in specs if s.kind == "grid")


def expand(specs: Sequence[ParamSpec], samples: int, seed: int) -> list[dict[str, Any]]:
    """The trials' parameters in Tune's own order, drawn by Tune's own generator with ``seed``.

    What the sweep will run, without running it: ``grid_size * samples`` dicts.
    """
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.variant_generator import generate_variants

    rng = BasicVariantGenerator(random_state=seed)._random_state
    space = param_space(specs)
    out = []
    for _ in range(samples):
        for resolved, variant in generate_variants({"config": space}, random_state=rng):
            out.append({s.name: variant["config"][s.name] for s in specs})
    return out


def _typed(flag: str, text: str, kind: type) -> Any:
    text = text.strip()
    try:
        if kind is bool:
            if text.lower() in _TRUE + _FALSE:
                return text.lower() in _TRUE
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        what = {bool: "true or false", int: "a whole number", float: "a finite number"}[kind]
        raise UsageError(f"{flag}: {text!r} is not {what}") from None
    if not text:
        raise UsageError(f"{flag}: an empty value; give a,b,c")
    return text


def _values(flag: str, text: str, kind: type) -> tuple[Any, ...]:
    values = tuple(_typed(flag, v, kind) for v in text.split(","))
    if len(set(values)) != len(values):
        raise UsageError(f"{flag}: a value is given twice")
    return values


def _range(flag: str, kind_name: str, rest: str, kind: type) -> tuple[Any, Any]:
    parts = rest.split(":")
    if len(parts) != 2:
        raise UsageError(f"{flag}: expected {kind_name}:LO:HI")
    want = int if kind_name == "randint" else float
    if kind is not want:
        other = "randint:LO:HI or a grid" if kind is int else "uniform/loguniform:LO:HI or a grid"
        if kind in (bool, str):
            other = "a grid a,b or choice:a,b"
        raise UsageError(f"{flag}: {kind_name} draws {want.__name__}s but this option takes "
                         f"{kind.__name__} values; use {other}")
    low, high = (_typed(flag, p, want) for p in parts)
    if not low < high:
        raise UsageError(f"{flag}: LO must be below HI")
    if kind_name == "loguniform" and low <= 0:
        raise UsageError(f"{flag}: loguniform needs 0 < LO")
    return low, high

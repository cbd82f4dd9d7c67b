"""Parameter types that carry their behaviour: each knows its Tune domain, its Optuna draw, a
random draw, its values' Python type, and how to check a value, so no caller asks which type it is.

Pure: no Ray or Optuna import until a Tune domain or an Optuna draw is asked for.
"""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar, Iterator, Literal, Mapping, Optional, Union

from pydantic import BaseModel, ConfigDict

Scalar = Union[bool, int, float, str]


#: Where a conditional parameter's chosen option sits in Tune's nested config (``names.flatten``
#: turns it back into flat names); not a valid parameter name, so it cannot collide.
OPTION_KEY = "__option__"


# ---------------------------------------------------------------------------------------------
# Search-space parameters: each type carries its behaviour, so no caller needs to ask which it is
# ---------------------------------------------------------------------------------------------
class _Param(BaseModel):
    model_config = ConfigDict(frozen=True)

    #: Whether a searcher has anything to learn about the parameter (a constant has not).
    learnable: ClassVar[bool] = True

    def sub_spaces(self) -> dict[str, dict[str, "Param"]]:
        """The sub-space each option opens (a conditional choice); empty for every other type."""
        return {}

    def listed(self) -> list[Any]:
        """The values the space lists outright: a constant, a choice's values, a conditional's
        option names; empty for a distribution."""
        return []

    def first(self) -> Any:
        """One value the parameter can take (the dry run's): a constant, the first option, the low end."""
        raise NotImplementedError

    def python_type(self) -> type:
        """The Python type of the parameter's values: bool, int, float or str."""
        raise NotImplementedError

    def ends(self) -> list[Any]:
        """The values that decide whether every value fits a domain: constants and choice values
        as they are, a distribution's ends (a uniform's high end only where it can be drawn)."""
        return self.listed()

    def open_high(self) -> Optional[float]:
        """The upper end a continuous draw approaches without reaching, else None."""
        return None

    def value_problem(self, v: Any) -> Optional[str]:
        """Why ``v`` is not a value this parameter can produce (the fix), or None."""
        raise NotImplementedError

    def tune_domain(self) -> Any:
        """The parameter as a Ray Tune domain (``param_space``'s form)."""
        raise NotImplementedError

    def suggest(self, trial: Any, key: str) -> Any:
        """A value drawn define-by-run from an Optuna trial under the name ``key`` (a conditional
        gives Tune's nested form, with its option's sub-parameters named ``key.option.sub``)."""
        raise NotImplementedError

    def draw(self, rng: random.Random) -> Any:
        """A value drawn uniformly (on the log scale for a log range) with ``rng``, in Tune's nested form."""
        raise NotImplementedError


class Fixed(_Param):
    kind: Literal["fixed"] = "fixed"
    value: Scalar
    learnable: ClassVar[bool] = False

    def listed(self) -> list[Any]:
        return [self.value]

    def first(self) -> Any:
        return self.value

    def python_type(self) -> type:
        return type(self.value)

    def value_problem(self, v: Any) -> Optional[str]:
        return None if v == self.value else f"the space fixes it at {self.value!r}"

    def tune_domain(self) -> Any:
        return self.value

    def suggest(self, trial: Any, key: str) -> Any:
        return self.value

    def draw(self, rng: random.Random) -> Any:
        return self.value


class Choice(_Param):
    kind: Literal["choice"] = "choice"
    values: tuple[Scalar, ...]

    def listed(self) -> list[Any]:
        return list(self.values)

    def first(self) -> Any:
        return self.values[0]

    def python_type(self) -> type:
        kinds = {type(v) for v in self.values}
        return kinds.pop() if len(kinds) == 1 else (float if kinds <= {int, float} else str)

    def value_problem(self, v: Any) -> Optional[str]:
        return None if v in self.values else f"choose one of {list(self.values)}"

    def tune_domain(self) -> Any:
        from ray import tune

        return tune.choice(list(self.values))

    def suggest(self, trial: Any, key: str) -> Any:
        return trial.suggest_categorical(key, list(self.values))

    def draw(self, rng: random.Random) -> Any:
        return rng.choice(self.values)


class Conditional(_Param):
    kind: Literal["conditional"] = "conditional"
    options: dict[str, dict[str, "Param"]]

    def sub_spaces(self) -> dict[str, dict[str, "Param"]]:
        return self.options

    def listed(self) -> list[Any]:
        return list(self.options)

    def ends(self) -> list[Any]:
        return []  # each option's sub-space is checked on its own

    def first(self) -> Any:
        option, sub = next(iter(self.options.items()))
        return {OPTION_KEY: option, **{k: p.first() for k, p in sub.items()}}

    def python_type(self) -> type:
        return str

    def value_problem(self, v: Any) -> Optional[str]:
        return None if v in self.options else f"choose one of the options {list(self.options)}"

    def tune_domain(self) -> Any:
        from ray import tune

        return tune.choice([{OPTION_KEY: opt, **{k: p.tune_domain() for k, p in sub.items()}} for opt, sub in self.options.items()])

    def suggest(self, trial: Any, key: str) -> Any:
        option = trial.suggest_categorical(key, list(self.options))
        return {OPTION_KEY: option, **{k: p.suggest(trial, f"{key}.{option}.{k}") for k, p in self.options[option].items()}}

    def draw(self, rng: random.Random) -> Any:
        option = rng.choice(list(self.options))
        return {OPTION_KEY: option, **{k: p.draw(rng) for k, p in self.options[option].items()}}


def _number_problem(v: Any) -> Optional[str]:
    return "give a finite number" if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) else None


class Uniform(_Param):
    kind: Literal["uniform", "loguniform", "quniform", "qloguniform"]
    low: float
    high: float
    q: Optional[float] = None

    @property
    def log(self) -> bool:
        return "log" in self.kind

    def first(self) -> Any:
        return self.low

    def python_type(self) -> type:
        return float

    def ends(self) -> list[Any]:
        return [self.low] + ([self.high] if self.q is not None else [])  # uniform and loguniform draw below high

    def open_high(self) -> Optional[float]:
        return self.high if self.q is None else None

    def value_problem(self, v: Any) -> Optional[str]:
        return _number_problem(v) or (None if self.low <= v <= self.high else f"give a number in [{self.low}, {self.high}]")

    def tune_domain(self) -> Any:
        from ray import tune

        make = {"uniform": tune.uniform, "loguniform": tune.loguniform, "quniform": tune.quniform, "qloguniform": tune.qloguniform}[self.kind]
        return make(self.low, self.high, self.q) if self.q is not None else make(self.low, self.high)

    def suggest(self, trial: Any, key: str) -> Any:
        if self.kind == "qloguniform":  # Optuna has no log scale with a step: round the draw
            return max(self.q, round(trial.suggest_float(key, self.low, self.high, log=True) / self.q) * self.q)
        step = self.q if self.kind == "quniform" else None
        high = self.low + math.floor((self.high - self.low) / step + 1e-9) * step if step else self.high
        return trial.suggest_float(key, self.low, high, log=self.log, step=step)

    def draw(self, rng: random.Random) -> Any:
        x = math.exp(rng.uniform(math.log(self.low), math.log(self.high))) if self.log else rng.uniform(self.low, self.high)
        return x if self.q is None else max(self.q, round(x / self.q) * self.q) if self.log else round(x / self.q) * self.q


class RandInt(_Param):
    kind: Literal["randint", "qrandint"]
    low: int
    high: int
    q: Optional[int] = None

    @property
    def top(self) -> int:
        """The highest value: randint's high is exclusive, qrandint's inclusive."""
        return self.high - 1 if self.kind == "randint" else self.high

    def first(self) -> Any:
        return self.low

    def python_type(self) -> type:
        return int

    def ends(self) -> list[Any]:
        return [self.low, self.top]

    def value_problem(self, v: Any) -> Optional[str]:
        if _number_problem(v):
            return _number_problem(v)
        if v != int(v) or not self.low <= v <= self.top:
            return f"give an integer in [{self.low}, {self.high}{')' if self.kind == 'randint' else ']'}"
        return None

    def tune_domain(self) -> Any:
        from ray import tune

        return tune.randint(self.low, self.high) if self.kind == "randint" else tune.qrandint(self.low, self.high, self.q)

    def suggest(self, trial: Any, key: str) -> Any:
        step = self.q or 1
        return trial.suggest_int(key, self.low, self.low + (self.top - self.low) // step * step, step=step)

    def draw(self, rng: random.Random) -> Any:
        step = self.q or 1
        return self.low + rng.randrange(0, (self.top - self.low) // step + 1) * step


Param = Union[Fixed, Choice, Conditional, Uniform, RandInt]
Conditional.model_rebuild()


def is_parsed(raw: Any) -> bool:
    """Whether ``raw`` is a space already parsed, or dumped by ``JobSpec.to_dict`` (each entry
    carries its ``kind``), rather than YAML as people write it."""
    return isinstance(raw, dict) and bool(raw) and all(isinstance(p, _Param) or (isinstance(p, dict) and "kind" in p) for p in raw.values())


def walk(space: Mapping[str, Param], prefix: str = "") -> Iterator[tuple[str, Param]]:
    """Every parameter of ``space`` with its flat name, a conditional's sub-parameters as
    ``<param>.<sub>`` after it."""
    for name, p in space.items():
        key = f"{prefix}{name}"
        yield key, p
        for sub in p.sub_spaces().values():
            yield from walk(sub, f"{key}.")

"""The numbers and choices of every command, checked in one place before anything loads.

`BOUNDS` says, per option (the argparse dest, e.g. ``max_new_tokens`` for ``--max-new-tokens``),
which values are accepted; `check_args` checks every option a parsed command line has, and
`check_value` one option (StudyConfig.validate uses it for the study's options given in Python).
Every refusal is one line that names the flag, the accepted range and the value given.
"""
from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass

from specsel.core.arms import MAX_GAMMA
from specsel.core.seeds import MAX_SEED


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, refusing a bad command line (an unknown flag or choice, a missing
    value) in one line that points at --help, instead of the whole usage text."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


class OptionError(ValueError):
    """A bad option; the message is one line that names the flag and the fix."""


def flag(name: str) -> str:
    """The command-line flag of an option: max_new_tokens -> --max-new-tokens."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Bound:
    """The accepted values of one option: integers (or reals) from `low` to `high` (None: no top),
    each end closed unless said open. `hint` is said after every refusal; `over` only when the
    value is above the top (why the top is there)."""
    low: float
    high: float | None = None
    integer: bool = True
    open_low: bool = False
    open_high: bool = False
    hint: str = ""
    over: str = ""

    def span(self) -> str:
        if self.high is None:
            return f"> {self.low}" if self.open_low else f">= {self.low}"
        return f"in {'(' if self.open_low else '['}{self.low}, {self.high}{')' if self.open_high else ']'}"

    def holds(self, value) -> bool:
        if self.integer and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            return False
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            return False
        above_low = value > self.low if self.open_low else value >= self.low
        below_high = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above_low and below_high

    def message(self, name: str, given) -> str:
        kind = "an integer " if self.integer else ""
        above = self.high is not None and isinstance(given, numbers.Real) and given > self.high
        return f"{flag(name)} must be {kind}{self.span()} (got {given}){self.over if above else ''}{self.hint}"


_GAMMA = dict(high=MAX_GAMMA, over=f": a draft longer than {MAX_GAMMA} tokens cannot pay")
BOUNDS = {
    "gamma": Bound(1, **_GAMMA),
    "gammas": Bound(1, **_GAMMA, hint="; e.g. --gammas 1,2,4"),
    "bsz": Bound(1, hint="; e.g. --bsz 1,4"),
    "max_batch": Bound(1),
    "max_new_tokens": Bound(1),
    "seed": Bound(0, MAX_SEED, over=" (seeds are below 2**64)"),
    "threads": Bound(1, hint="; leave it out for torch's default"),
    "limit": Bound(1),
    "skip": Bound(0),
    "folds": Bound(2),
    "repeats": Bound(1, hint="; 3 gives a median and spread"),
    "score_every": Bound(1, hint="; 1 scores every round"),
    "fixed_candidates": Bound(0, hint="; 0 runs every fixed arm"),
    "temperature": Bound(0, integer=False, hint="; 0 means greedy"),
    "top_p": Bound(0, 1, integer=False, open_low=True, hint="; 1 keeps the whole distribution"),
    "top_k": Bound(0, hint="; 0 switches top-k off"),
    "min_p": Bound(0, 1, integer=False, open_high=True, hint="; 0 switches min-p off"),
    "C": Bound(0, integer=False, open_low=True, hint="; e.g. --C 1"),
    "prompts": Bound(1),
    "steps": Bound(1),
    "batch_size": Bound(1),
    "seq_len": Bound(2),
    "save_every": Bound(1),
    "rank": Bound(1),
    "alpha": Bound(1),
    "ttt_steps": Bound(1),
    "lr": Bound(0, integer=False, open_low=True),
    "self_distill_prompts": Bound(0),
    "self_distill_tokens": Bound(1),
    "self_distill_repeat": Bound(1),
    "eval_prompts": Bound(0),
}
# options given as a comma list of integers on the command line ("1,2,4")
LISTS = ("gammas", "bsz")
# sampling options that greedy decoding (temperature 0) does not use
SAMPLING_ONLY = {"top_p": 1.0, "top_k": 0, "min_p": 0.0}


def parse_csv(text: str) -> list[str]:
    """The items of a comma list, stripped, empty ones dropped: "a, b," -> ["a", "b"]."""
    return [t.strip() for t in text.split(",") if t.strip()]


def parse_ints(text: str, option: str, error: type[ValueError] = OptionError) -> list[int]:
    """The integers of a comma list; `error` naming `option` otherwise."""
    try:
        return [int(t) for t in parse_csv(text)]
    except ValueError:
        raise error(f"{option} takes comma-separated integers (got {text!r}); e.g. {option} 1,2,4") from None


def check_value(name: str, value, error: type[ValueError] = OptionError) -> None:
    """Refuse a value of option `name` outside its BOUNDS (a list option: every item, and not empty)."""
    bound = BOUNDS[name]
    if name in LISTS:
        items = parse_ints(value, flag(name), error) if isinstance(value, str) else \
            list(value) if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise error(f"{flag(name)} is empty{bound.hint}")
        bad = [v for v in items if not bound.holds(v)]
        if bad:
            above = bound.high is not None and any(isinstance(v, numbers.Real) and v > bound.high for v in bad)
            raise error(f"{flag(name)} must be integers {bound.span()} (got {', '.join(map(str, bad))})"
                        f"{bound.over if above else ''}{bound.hint}")
    else:
        if isinstance(value, str):              # a flag read as text (e.g. --gamma of the study)
            value = _number(value, name, bound, error)
        if not bound.holds(value):
            raise error(bound.message(name, value))


def _number(text: str, name: str, bound: Bound, error: type[ValueError]):
    return read_number(text, name, bound.integer, error)


def read_number(text: str, name: str, integer: bool, error: type[ValueError] = OptionError):
    """The number a flag's text gives (an int when `integer`); `error` naming the flag otherwise."""
    try:
        return int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise error(f"{flag(name)} takes {kind} (got {text!r})") from None


def check_target_options(values: dict, error: type[ValueError] = OptionError) -> None:
    """--dtype is a dtype's name, --device one this machine has, --device-map auto, balanced or a
    JSON file of one (cheap: nothing loads)."""
    dtype, device, device_map = values.get("dtype"), values.get("device"), values.get("device_map")
    if device_map is not None:
        from specsel.modeling.device_map import read_device_map
        try:
            read_device_map(device_map)
        except ValueError as exc:
            raise error(str(exc)) from None
    if dtype is None and device is None:
        return
    from specsel.modeling.target import DTYPE_NAMES, resolve_device
    if dtype is not None and str(dtype).lower().removeprefix("torch.") not in DTYPE_NAMES:
        raise error(f"--dtype {dtype}: unknown dtype; use one of float32, bfloat16, float16")
    if device is not None:
        try:
            resolve_device(device)
        except ValueError as exc:
            raise error(f"--device {device}: {exc}") from None


def check_args(args, error: type[ValueError] = OptionError) -> None:
    """Check every option of a parsed command line that BOUNDS knows (None: not given), and its
    --dtype, --device and --device-map."""
    values = vars(args)
    for name in BOUNDS:
        if values.get(name) is not None:
            check_value(name, values[name], error)
    check_target_options(values, error)


def unused_sampling(args) -> str | None:
    """A notice when greedy decoding (--temperature 0) is given sampling options it does not use."""
    values = vars(args)
    if values.get("temperature") != 0:
        return None
    unused = [flag(n) for n, neutral in SAMPLING_ONLY.items() if values.get(n, neutral) != neutral]
    if not unused:
        return None
    return f"greedy decoding (--temperature 0) does not use {', '.join(unused)}; pass --temperature > 0 to sample"

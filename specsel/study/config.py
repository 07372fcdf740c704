"""The study's options (StudyConfig) and their command-line flags.

Every StudyConfig field is a flag of the one table of flags (``specsel.flags.FLAGS``,
``--max-new-tokens`` for ``max_new_tokens``), whose default it takes; ``add_config_arguments``
adds the flags and ``config_from_args`` reads them back into a validated config.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields
from typing import Sequence

from specsel.core.arms import arm_name
from specsel.core.runs import ROUTER_LEARNERS, SETTINGS, STUDY_LEARNERS
from specsel.flags import FLAGS, add_flags
from specsel.options import OptionError, check_value, parse_csv, read_number
from specsel.options import parse_ints as _parse_ints


class StudyError(OptionError):
    """Bad study options or output folder; the message is one line that names the fix."""


def warn_stderr(message: str) -> None:
    """A one-line notice on stderr (the default `warn` of load_items and run_study)."""
    print(f"warning: {message}", file=sys.stderr)


# StudyConfig's numeric options, checked against specsel.options.BOUNDS
NUMBERS = ("gamma", "gammas", "bsz", "max_new_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
           "fixed_candidates", "score_every", "repeats")

# the joint setting's HedgeSpec: "factored" learns the drafter and picks gamma (0 included) by cost
# (specsel.learners.factored); "arms" learns over every drafter x gamma arm (specsel.learners.policy)
JOINT_HEDGESPEC = ("factored", "arms")


def _default(name: str):
    """A study option's default: its flag's (specsel.flags.FLAGS), so a command and Python agree."""
    return FLAGS[name].default


@dataclass
class StudyConfig:
    settings: Sequence[str] = SETTINGS
    learners: Sequence[str] = STUDY_LEARNERS
    gamma: int = _default("gamma")                      # drafter setting: every drafter at this gamma
    gammas: Sequence[int] = _default("gammas")          # joint setting: drafters x gammas
    bsz: Sequence[int] = _default("bsz")
    max_new_tokens: int = _default("max_new_tokens")
    temperature: float = _default("temperature")        # 0 = greedy
    top_p: float = _default("top_p")
    top_k: int = _default("top_k")                      # sampling: 0 = off
    min_p: float = _default("min_p")                    # sampling: 0 = off
    seed: int = _default("seed")
    fixed_candidates: int = _default("fixed_candidates")  # joint: fixed arms run live (best by estimate); 0 = all
    score_every: int = _default("score_every")          # full information: EAGLE heads score this many rounds at once
    repeats: int = _default("repeats")                  # timed runs decoded this many times, interleaved
    joint_hedgespec: str = _default("joint_hedgespec")  # factored (drafter x cost-chosen gamma) or arms
    target: str = ""                                    # recorded in config.json only
    router: str = _default("router")                    # a prompt router's folder, "default", or "" (no router rows)

    def __post_init__(self):
        if self.router:                         # a router adds its two rows (specsel.learners.routed)
            self.learners = [*self.learners, *(l for l in ROUTER_LEARNERS if l not in self.learners)]

    def validate(self) -> None:
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad or not self.settings:
            raise StudyError(f"unknown setting(s) {', '.join(bad) or '(none given)'}; "
                             f"choose from {', '.join(SETTINGS)}")
        if not self.learners:
            raise StudyError(f"--learners is empty; name at least one of {', '.join(STUDY_LEARNERS)}")
        bad = [l for l in self.learners if l not in STUDY_LEARNERS + ROUTER_LEARNERS]
        if bad:
            raise StudyError(f"unknown learner(s) {', '.join(bad)}; choose from {', '.join(STUDY_LEARNERS)} "
                             f"(and {', '.join(ROUTER_LEARNERS)} with --router)")
        if not self.router and any(l in ROUTER_LEARNERS for l in self.learners):
            raise StudyError(f"the learners {', '.join(ROUTER_LEARNERS)} need a router: pass --router default "
                             "(the shipped one) or --router DIR (specsel router fit)")
        for name in NUMBERS:                    # the same ranges as every command's (specsel.options)
            check_value(name, getattr(self, name), StudyError)
        if self.joint_hedgespec not in JOINT_HEDGESPEC:
            raise StudyError(f"--joint-hedgespec must be one of {', '.join(JOINT_HEDGESPEC)} "
                             f"(got {self.joint_hedgespec!r})")

    def arms(self, setting: str, drafters: Sequence[str]) -> list[str]:
        """The setting's arms, longest gamma first per drafter: a learner plays arm 0 until its
        first feedback arrives (up to 2 gamma tokens later), and the longest draft of the
        first drafter commits the most tokens while it waits. The joint setting ends with the
        autoregressive arm."""
        if setting == "drafter":
            return [arm_name(d, self.gamma) for d in drafters]
        # joint: every drafter at every gamma, and the autoregressive arm (speculation may not pay)
        gammas = sorted(set(self.gammas), reverse=True)
        return [arm_name(d, g) for d in drafters for g in gammas] + [arm_name(None, 0)]


def parse_ints(text: str, option: str) -> list[int]:
    """The integers of a comma list; a StudyError naming `option` otherwise."""
    return _parse_ints(text, option, StudyError)


CONFIG_FIELDS = tuple(f.name for f in fields(StudyConfig))      # each is a flag of specsel.flags.FLAGS


def add_config_arguments(ap: argparse.ArgumentParser, names: Sequence[str] | None = None, **defaults) -> None:
    """Add the flags of the StudyConfig fields `names` (default: every field), from the one table of
    flags (specsel.flags); `defaults` replaces a field's default (e.g. target=a local model)."""
    add_flags(ap, *(CONFIG_FIELDS if names is None else names), **defaults)


def config_from_args(args) -> StudyConfig:
    """The validated StudyConfig of parsed flags (StudyError when one is bad): comma lists are read
    here (settings, learners: names; gammas, bsz: integers); the numbers were read by read_flags."""
    values = {}
    for name in CONFIG_FIELDS:
        value = getattr(args, name)
        if isinstance(value, str) and FLAGS[name].kind == "names":
            value = parse_csv(value)
        elif isinstance(value, str) and FLAGS[name].kind == "ints":
            value = parse_ints(value, FLAGS[name].option)
        elif isinstance(value, str) and FLAGS[name].kind in ("int", "float"):
            value = read_number(value, name, FLAGS[name].kind == "int", StudyError)
        values[name] = value
    cfg = StudyConfig(**values)
    cfg.validate()
    return cfg

"""The study's options (StudyConfig) and their command-line flags, mapped in one table.

Every StudyConfig field has one flag (``--max-new-tokens`` for ``max_new_tokens``), declared in
``CONFIG_FLAGS`` with how its text is read; ``add_config_arguments`` adds the flags (defaults
taken from the dataclass) and ``config_from_args`` reads them back into a validated config.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, dataclass, fields
from typing import Sequence

from specsel.core.arms import arm_name
from specsel.core.runs import ROUTER_LEARNERS, SETTINGS, STUDY_LEARNERS
from specsel.options import OptionError, check_value, parse_csv
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


@dataclass
class StudyConfig:
    settings: Sequence[str] = SETTINGS
    learners: Sequence[str] = STUDY_LEARNERS
    gamma: int = 4                              # drafter setting: every drafter at this gamma
    gammas: Sequence[int] = (1, 2, 4)           # joint setting: drafters x gammas
    bsz: Sequence[int] = (4,)
    max_new_tokens: int = 64
    temperature: float = 0.0                    # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0                              # sampling: 0 = off
    min_p: float = 0.0                          # sampling: 0 = off
    seed: int = 0
    fixed_candidates: int = 2                   # joint: fixed arms run live (best by estimate); 0 = all
    score_every: int = 1                        # full information: EAGLE heads score this many rounds at once
    repeats: int = 1                            # phase 2 decoded this many times, interleaved (timing spread)
    joint_hedgespec: str = "factored"           # joint HedgeSpec: factored (drafter x cost-chosen gamma) or arms
    target: str = ""                            # recorded in config.json only
    router: str = ""                            # a prompt router's folder, "default", or "" (no router rows)

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


@dataclass(frozen=True)
class Flag:
    """The flag of one StudyConfig field.

    kind: "names" (a comma list), "ints" (a comma list of integers), "int" (one integer,
    written and read like "ints"), "number" (an int or float, as the field's default), "text".
    """
    field: str
    kind: str
    help: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.field.replace("_", "-")

    def default_text(self, default):
        if self.kind == "names":
            return ",".join(default)
        if self.kind == "ints":
            return ",".join(str(v) for v in default)
        if self.kind == "int":
            return str(default)
        return default

    def parse(self, value):
        if self.kind == "names":
            return parse_csv(value)
        if self.kind == "ints":
            return parse_ints(value, self.option)
        if self.kind == "int":
            one = parse_ints(value, self.option)
            if len(one) != 1:
                raise StudyError(f"{self.option} takes one integer (got {value!r}); use --gammas for the joint setting")
            return one[0]
        return value


CONFIG_FLAGS = (
    Flag("target", "text", "local dir, hub id, or the embedded default"),
    Flag("settings", "names", "drafter (drafters at --gamma, accepted length) and/or joint (drafters x --gammas, "
                              "tokens/s)"),
    Flag("learners", "names", f"comma list of {', '.join(STUDY_LEARNERS)}"),
    Flag("gamma", "int", "speculation length of the drafter setting"),
    Flag("gammas", "ints", "speculation lengths of the joint setting"),
    Flag("bsz", "ints", "comma list of batch sizes"),
    Flag("max_new_tokens", "number"),
    Flag("temperature", "number", "0 = greedy (default); > 0 samples"),
    Flag("top_p", "number", "sampling: nucleus mass kept (1 = off)"),
    Flag("top_k", "number", "sampling: most likely tokens kept (0 = off)"),
    Flag("min_p", "number", "sampling: drop tokens below min-p x the top probability (0 = off)"),
    Flag("seed", "number", "stream order, learner seeds, sampling seeds"),
    Flag("fixed_candidates", "number", "joint setting: fixed arms run live, the best by the full-information "
                                       "estimate (0 = every arm, both settings)"),
    Flag("score_every", "number", "full information, greedy: EAGLE heads score the committed tokens of this many "
                                  "rounds in one forward; the learner hears of them then, which cost HedgeSpec "
                                  "about 4%% of its accepted tokens at 3 (default 1: every round)"),
    Flag("joint_hedgespec", "text", "the joint setting's HedgeSpec: factored (HedgeSpec over drafters, gamma "
                                    "and the autoregressive arm by expected batch throughput) or arms (one learner "
                                    "over every drafter x gamma arm)"),
    Flag("router", "text", "a prompt router: a folder written by `specsel router fit`, or 'default' (the one "
                           "shipped for the default pool); adds the rows router and router_hedgespec"),
    Flag("repeats", "number", "decode every timed run this many times, interleaved batch by batch; tokens/s and "
                              "speedup are the median over repeats, with the speedup's min and max"),
)
assert {f.field for f in CONFIG_FLAGS} == {f.name for f in fields(StudyConfig)}, "every StudyConfig field needs a flag"


def add_config_arguments(ap: argparse.ArgumentParser, names: Sequence[str] | None = None, **defaults) -> None:
    """Add the flags of the StudyConfig fields `names` (default: every field, in table order);
    `defaults` replaces a field's dataclass default (e.g. target=the embedded model)."""
    default_of = {f.name: f.default for f in fields(StudyConfig) if f.default is not MISSING}
    for flag in CONFIG_FLAGS:
        if names is not None and flag.field not in names:
            continue
        default = defaults.get(flag.field, default_of[flag.field])
        kw = {"type": type(default)} if flag.kind == "number" else {}
        ap.add_argument(flag.option, default=flag.default_text(default), help=flag.help, **kw)


def config_from_args(args) -> StudyConfig:
    """The validated StudyConfig of parsed flags (StudyError when one is bad)."""
    cfg = StudyConfig(**{flag.field: flag.parse(getattr(args, flag.field)) for flag in CONFIG_FLAGS})
    cfg.validate()
    return cfg

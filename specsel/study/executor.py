"""The one experiment executor: the study, the benchmarks and the tuning runs all decode through it.

An experiment is a stream of queries (`StudyItem`s), one result store (`ResultStore`) and a plan
of phases. A `Phase` is a batch size and a list of runs (`RunSpec`) decoded over the same
batches of the stream:

* the stream is cut into batches of consecutive queries (`stream_batches`);
* per batch, the runs that are not timed (`RunSpec.timed=False`: a full-information pass the
  others are planned from) decode first, once; then the timed runs, `repeats` times: repeat k
  (runs named ``<run>#k+1``, `specsel.core.runs.repeat_run`) in an order turned by b + k, so
  the machine's drift spreads evenly over the runs, and every speed ratio can be taken between
  runs that decoded the same batch side by side (`evaluators.timing`);
* every decode is measured with a `MachineMeter` (``batch_machine`` in its lines), so a batch
  that another process disturbed is known (`evaluators.reliability`);
* each finished batch is one write plus fsync to the store (`hook` is called then), and a
  resumed experiment skips the batches stored: a run's policy is built once per phase
  (`Decoder.policy`) and given the lines it already decoded (`ArmPolicy.restore`), and before
  each batch it is told its stream position (`ArmPolicy.seek`), so it plays what an
  uninterrupted experiment would have played;
* one warm-up before the first decode keeps one-time costs out of the first timed batch.

What a run does is the `Decoder`'s business: `EngineDecoder` decodes with one `SpecEngine` and
the policies of `specsel.study.policies`; a benchmark comparing engines or caches passes its own.
Lines have one schema (docs/design.md, "Records"), whoever writes them.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

from evaluators.records import to_dict
from specsel.core.records import RoundRecord
from specsel.core.runs import FULL_INFORMATION_LEARNERS, repeat_run
from specsel.core.seeds import batch_seed
from specsel.study.items import StudyItem
from specsel.study.meter import MachineMeter, rank_group
from specsel.study.ranks import Ranks
from specsel.study.store import ResultStore


@dataclass(frozen=True)
class RunSpec:
    """One run: its name (the lines' ``run``), what it plays and how it is fed.

    kind: autoregressive | fixed | fullinfo | learner | factored | dynamic_gamma | oracle (built by
    specsel.study.policies), or a kind a benchmark's own Decoder knows."""
    name: str
    kind: str
    arm: str | None = None                          # fixed arm, or dynamic_gamma's / the oracle's drafter
    setting: str | None = None                      # drafter | joint
    learner: str | None = None
    arms: tuple[str, ...] = ()                      # a learner's arms, written form
    gammas: tuple[int, ...] = ()                    # the factored policy's speculation lengths
    options: tuple[tuple[str, object], ...] = ()    # the policy's keyword options (a variant)
    score_every: int | None = None                  # full information: rounds scored at once (None: the plan's)
    timed: bool = True                              # False: decoded once per batch, first; no speed ratio
    feedback_mode: str | None = None                # "bandit" | "full"; None: what the run's learner needs

    @property
    def feedback(self) -> str:
        if self.feedback_mode is not None:
            return self.feedback_mode
        full = self.kind in ("fullinfo", "factored") or self.learner in FULL_INFORMATION_LEARNERS
        return "full" if full else "bandit"


@dataclass(frozen=True)
class Phase:
    """Runs decoded over the same batches of `bsz` queries (module docstring)."""
    bsz: int
    runs: tuple[RunSpec, ...]
    repeats: int = 1
    desc: str = ""

    def order(self, b: int) -> list[RunSpec]:
        """The runs of batch `b` in decode order: untimed first, then each repeat of the timed
        runs, turned by b + k."""
        once = [s for s in self.runs if not s.timed]
        timed = [s for s in self.runs if s.timed]
        out = list(once)
        for k in range(self.repeats if timed else 0):
            turn = (b + k) % len(timed)
            out += [replace(s, name=repeat_run(s.name, k)) for s in timed[turn:] + timed[:turn]]
        return out


def stream_batches(n_items: int, bsz: int) -> list[list[int]]:
    """Stream positions of each batch: consecutive queries, `bsz` at a time."""
    return [list(range(i, min(i + bsz, n_items))) for i in range(0, n_items, bsz)]


class Decoder:
    """What decodes a run (the protocol; EngineDecoder is the usual one)."""

    def warm_up(self, prompt: Sequence[int]) -> None:
        """One short decode of everything the runs use, before the first timed batch."""

    def policy(self, spec: RunSpec, bsz: int):
        """The run's policy (built once per phase; the executor restores and seeks it)."""
        return None

    def processes(self) -> list[int]:
        """Other processes whose CPU time is this run's (a server decoding for it on this machine)."""
        return []

    def decode(self, spec: RunSpec, policy, prompts: list[list[int]], seed: int):
        """Decode one batch; returns a specsel.engine.GenerationResult (or one with its fields)."""
        raise NotImplementedError


@dataclass
class Executor:
    """Decodes phases of one stream into one store (module docstring). `extras` adds fields to the
    lines of a run (by its base name, e.g. a full-information run's replay_exact)."""
    items: Sequence[StudyItem]
    store: ResultStore
    decoder: Decoder
    seed: int = 0
    progress: bool = True
    hook: Callable[[RunSpec, int, int], None] | None = None
    ranks: Ranks = field(default_factory=Ranks)
    extras: dict[str, dict] = field(default_factory=dict)
    decoded: int = 0                                # new tokens this process decoded
    warmed: bool = False

    def __post_init__(self):
        group = rank_group() if self.ranks.sharded else [os.getpid()]
        self.meter = MachineMeter(group + [p for p in self.decoder.processes() if p not in group])

    def todo(self, phase: Phase) -> list[tuple[int, RunSpec]]:
        batches = stream_batches(len(self.items), phase.bsz)
        return [(b, spec) for b in range(len(batches)) if self.ranks.owns(b) for spec in phase.order(b)
                if (spec.name, phase.bsz, b) not in self.store.done]

    def execute(self, phase: Phase) -> None:
        """Decode every batch of every run of `phase` not yet in the store."""
        from tqdm.auto import tqdm

        todo = self.todo(phase)
        if not todo:
            return
        if not self.warmed:
            self.decoder.warm_up(self.items[0].prompt[-16:])
            self.warmed = True
        batches = stream_batches(len(self.items), phase.bsz)
        policies = {spec.name: self._policy(spec, phase.bsz) for _, spec in todo}
        with tqdm(total=len(todo), desc=phase.desc or f"bsz {phase.bsz}", unit="run", dynamic_ncols=True,
                  disable=not (self.progress and self.ranks.leader)) as bar:
            for b, spec in todo:
                bar.set_postfix_str(spec.name)
                self._decode(spec, policies[spec.name], phase.bsz, b, batches[b])
                bar.update(1)

    def _policy(self, spec: RunSpec, bsz: int):
        """The run's policy, restored from the batches this process already stored for it."""
        policy = self.decoder.policy(spec, bsz)
        restore = getattr(policy, "restore", None)
        if restore is not None:
            lines = [line for line in self.store.run_lines(spec.name, bsz) if self.ranks.owns(line["batch"])]
            restore(_batches_of(lines))
        return policy

    def _decode(self, spec: RunSpec, policy, bsz: int, b: int, batch: list[int]) -> None:
        seek = getattr(policy, "seek", None)
        if seek is not None:
            seek(batch[0])                          # query number = stream position (learner seeds)
        self.meter.start()
        res = self.decoder.decode(spec, policy, [self.items[i].prompt for i in batch], batch_seed(self.seed, bsz, b))
        machine = self.meter.stop()
        self.store.append(self.query_lines(spec, bsz, b, batch, res, machine))
        self.decoded += res.new_tokens
        if self.hook is not None:
            self.hook(spec, bsz, b)

    def query_lines(self, spec: RunSpec, bsz: int, b: int, batch: list[int], res, machine: dict) -> list[dict]:
        """One line per query of the batch (docs/design.md, "Records")."""
        items = self.items
        shared = {"run": spec.name, "setting": spec.setting, "learner": spec.learner, "arm": spec.arm,
                  "feedback": spec.feedback, "bsz": bsz, "batch": b, "batch_qids": [items[i].qid for i in batch],
                  "batch_wall_s": res.wall_s, "batch_prefill_s": res.prefill_s, "batch_new_tokens": res.new_tokens,
                  "batch_machine": machine, **self.extras.get(spec.name.partition("#")[0], {})}
        lines = []
        timing = getattr(res, "requests", None) or []
        for row, i in enumerate(batch):
            recs = sorted((to_dict(r) for r in res.records if r.row == row), key=lambda r: r["round"])
            lines.append({**shared, "index": i, "qid": items[i].qid, "domain": items[i].domain,
                          "tokens": res.tokens[row], "eos": res.stopped_by_eos[row], "records": recs,
                          **({"request": asdict(timing[row])} if row < len(timing) else {})})
        return lines


def _batches_of(lines: Sequence[dict]) -> list[list[list[RoundRecord]]]:
    """Stored lines as ArmPolicy.restore takes them: batches in decode order, queries in row order."""
    by_batch: dict[int, list[dict]] = {}
    for line in lines:
        by_batch.setdefault(line["batch"], []).append(line)
    return [[[RoundRecord.from_dict(r) for r in line["records"]]
             for line in sorted(by_batch[b], key=lambda l: l["index"])] for b in sorted(by_batch)]

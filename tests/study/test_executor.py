"""specsel.study.executor: the one executor every study, benchmark and tuning run decodes through."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from specsel.core.arms import Arm
from specsel.core.policy import ArmPolicy
from specsel.core.records import RoundRecord
from specsel.study import Executor, Phase, ResultStore, RunSpec, StudyItem, stream_batches
from specsel.study.executor import Decoder


def test_batches_are_consecutive_stream_positions():
    assert stream_batches(5, 2) == [[0, 1], [2, 3], [4]]


def test_a_phase_decodes_untimed_runs_first_then_every_repeat_turned_by_batch_and_repeat():
    once = RunSpec("fullinfo", "learner", timed=False)
    a, b, c = (RunSpec(n, "fixed", arm="x@1") for n in "abc")
    phase = Phase(4, (a, once, b, c), repeats=2)
    assert [s.name for s in phase.order(0)] == ["fullinfo", "a", "b", "c", "b#2", "c#2", "a#2"]
    assert [s.name for s in phase.order(1)] == ["fullinfo", "b", "c", "a", "c#2", "a#2", "b#2"]
    assert [s.name for s in Phase(4, (once,), repeats=3).order(0)] == ["fullinfo"]


class Remembering(ArmPolicy):
    """Plays one arm; remembers what the executor told it (seek, restore)."""

    def __init__(self):
        self.sought, self.restored = [], None

    def seek(self, query):
        self.sought.append(query)

    def restore(self, batches):
        self.restored = batches

    def select(self, rows):
        return [Arm.autoregressive()] * len(rows)


class FakeDecoder(Decoder):
    """Decodes without a model: each query's tokens are its prompt reversed, one round per token."""

    def __init__(self, fail_at=None):
        self.policies, self.decoded, self.warmed, self.fail_at = {}, [], 0, fail_at

    def warm_up(self, prompt):
        self.warmed += 1

    def policy(self, spec, bsz):
        self.policies[spec.name] = Remembering()
        return self.policies[spec.name]

    def decode(self, spec, policy, prompts, seed):
        if self.fail_at is not None and len(self.decoded) == self.fail_at:
            raise KeyboardInterrupt
        self.decoded.append((spec.name, tuple(map(tuple, prompts))))
        tokens = [list(reversed(p)) for p in prompts]
        records = [RoundRecord(row, k, None, 0, 0, 0, 1, 0.0, 0.001, len(prompts))
                   for row, t in enumerate(tokens) for k in range(len(t))]
        return SimpleNamespace(tokens=tokens, records=records, wall_s=0.01, prefill_s=0.001,
                               stopped_by_eos=[False] * len(prompts), new_tokens=sum(map(len, tokens)))


def items(n=5):
    return [StudyItem(f"q{i}", "math" if i % 2 else "code", [i + 1, i + 2, i + 3]) for i in range(n)]


def test_lines_have_one_schema_with_the_machine_each_batch_had(tmp_path):
    store = ResultStore(tmp_path / "queries.jsonl", resume=False)
    decoder = FakeDecoder()
    runs = (RunSpec("fullinfo/x@1", "fullinfo", arm="x@1", timed=False), RunSpec("autoregressive", "autoregressive"))
    Executor(items(), store, decoder, progress=False, extras={"fullinfo/x@1": {"replay_exact": {"x": True}}}) \
        .execute(Phase(2, runs, repeats=2))
    assert decoder.warmed == 1
    assert len(store.lines) == 5 * 3                              # the untimed run once, the timed one twice
    line = store.lines[0]
    assert set(line) >= {"run", "setting", "learner", "arm", "feedback", "bsz", "batch", "batch_qids", "batch_wall_s",
                         "batch_prefill_s", "batch_new_tokens", "batch_machine", "index", "qid", "domain", "tokens",
                         "eos", "records"}
    assert line["run"] == "fullinfo/x@1" and line["feedback"] == "full" and line["replay_exact"] == {"x": True}
    assert set(line["batch_machine"]) == {"wall_s", "cpu_s", "others_cpu_s", "cpus", "threads", "run_s", "wait_s"}
    assert {l["run"] for l in store.lines} == {"fullinfo/x@1", "autoregressive", "autoregressive#2"}
    assert all("replay_exact" not in l for l in store.lines if l["run"] != "fullinfo/x@1")
    # every policy was told the stream position of each batch it decoded
    assert decoder.policies["autoregressive"].sought == [0, 2, 4]


def test_an_interrupted_run_resumes_where_it_stopped_and_restores_its_policy(tmp_path):
    path = tmp_path / "queries.jsonl"
    runs = (RunSpec("a", "autoregressive"), RunSpec("b", "autoregressive"))
    with pytest.raises(KeyboardInterrupt):
        Executor(items(), ResultStore(path, resume=False), FakeDecoder(fail_at=3), progress=False) \
            .execute(Phase(2, runs))
    store = ResultStore(path, resume=True)
    assert {(r, b) for r, _, b in store.done} == {("a", 0), ("b", 0), ("b", 1)}    # batch 1: b went first
    decoder = FakeDecoder()
    Executor(items(), store, decoder, progress=False).execute(Phase(2, runs))
    assert [(name, prompts[0][0]) for name, prompts in decoder.decoded] == [("a", 3), ("a", 5), ("b", 5)]
    restored = decoder.policies["a"].restored                     # batch 0, as RoundRecords, queries in row order
    assert len(restored) == 1 and [len(q) for q in restored[0]] == [3, 3]
    assert isinstance(restored[0][0][0], RoundRecord) and restored[0][1][0].row == 1
    assert len(decoder.policies["b"].restored) == 2
    again = FakeDecoder()
    Executor(items(), ResultStore(path, resume=True), again, progress=False).execute(Phase(2, runs))
    assert again.decoded == [] and again.warmed == 0              # nothing left: no warm-up either

"""A server's learnt state survives a restart: a policy restored from the state file makes, on the
next request, exactly the choices the policy of a server that never stopped made (given the same
rounds); a state file of another target, pool or policy is refused in one line."""
from __future__ import annotations

import asyncio
import json

import pytest
from server_fixture import word_tokenizer

from drafters import ModelDrafter, NgramDrafter
from specsel import SpecEngine
from specsel.cli.serve import build_policy
from specsel.core.policy import ArmPolicy
from specsel.serve.service import ServeConfig, Service
from specsel.serve.state import ServerState, StateError
from specsel.testing import random_prompts

from conftest import drafter_models, target_model


class Recorder(ArmPolicy):
    """Forwards to a policy and logs every call the engine makes, with what the policy answered."""
    def __init__(self, base):
        self.base, self.log = base, []
        self.needs_full_information, self.arms = base.needs_full_information, base.arms

    def __getattr__(self, name):
        return getattr(self.base, name)

    def seek(self, query):
        self.base.seek(query)

    def restore(self, batches):
        self.base.restore(batches)

    def start(self, n_rows):
        self.base.start(n_rows)

    def select(self, rows):
        out = self.base.select(rows)
        self.log.append(("select", list(rows), list(out)))
        return out

    def scored_drafters(self):
        out = self.base.scored_drafters()
        self.log.append(("scored", None, None if out is None else sorted(out)))
        return out

    def timed(self, info):
        self.log.append(("timed", info, None))
        self.base.timed(info)

    def observe(self, info):
        self.log.append(("observe", info, None))
        self.base.observe(info)

    def finish(self, row):
        self.log.append(("finish", row, None))
        self.base.finish(row)

    def forget(self, row):
        self.log.append(("forget", row, None))
        self.base.forget(row)


def shifted(info, offset):
    from dataclasses import replace

    from specsel.core.records import RoundInfo
    return RoundInfo([r - offset for r in info.rows], info.arms, [replace(r, row=r.row - offset) for r in info.records])


def test_a_restored_policy_chooses_as_if_the_server_never_stopped(tmp_path):
    pool = {"ngram": NgramDrafter(), "model": ModelDrafter(drafter_models("llama")["noisy"])}
    engine = SpecEngine(target_model("llama"), pool, eos_token_id=1)
    path = tmp_path / "state.json"
    expect = ServerState("tiny", sorted(pool), "hedgespec", 0)
    live = Recorder(build_policy("hedgespec", pool, [1, 3], 0))
    service = Service(engine, word_tokenizer(), live, ServeConfig("hedgespec", 2, 8, None, 0, path, 3600.0, 10.0),
                      expect)
    service.start()
    prompts = [[3 + (i % 100) for i in p] for p in random_prompts(5, min_len=4, max_len=9, seed=3)]

    async def ask(prompt):
        async for d in service.run(prompt, 16, [], None):
            last = d
        return last

    for p in prompts[:4]:
        asyncio.run(ask(p))
    service.save()                                       # what a server stopped here would have kept
    live.log.clear()
    asyncio.run(ask(prompts[4]))                         # the never-stopped server's next request
    service.stop()
    selects = [e for e in live.log if e[0] == "select"]
    assert selects and json.loads(path.read_text())["queries"] == 5

    restored = build_policy("hedgespec", pool, [1, 3], 0)
    four = ServerState.load(path, expect)                # the state saved after request 4

    four.requests, four.queries = four.requests[:4], 4
    four.restore(restored)
    restored.start(0)
    for kind, arg, out in live.log:                      # the same rounds, request 5 as row 0 of a fresh stream
        if kind == "select":
            assert restored.select([r - 4 for r in arg]) == out
        elif kind == "scored":
            got = restored.scored_drafters()
            assert (None if got is None else sorted(got)) == out
        elif kind == "timed":
            restored.timed(shifted(arg, 4))
        elif kind == "observe":
            restored.observe(shifted(arg, 4))
        elif kind == "finish":
            restored.finish(arg - 4)
        else:
            restored.forget(arg - 4)


@pytest.mark.parametrize("field,value", [("target", "other"), ("pool", ["ngram"]), ("policy", "ucbspec"),
                                         ("seed", 3)])
def test_a_state_file_of_another_server_is_refused_in_one_line(tmp_path, field, value):
    path = tmp_path / "state.json"
    ServerState("tiny", ["model", "ngram"], "hedgespec", 0).save(path)
    expect = ServerState("tiny", ["model", "ngram"], "hedgespec", 0)
    setattr(expect, field, value)
    with pytest.raises(StateError, match=f"written for {field}") as e:
        ServerState.load(path, expect)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_a_state_file_is_refused(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("[1, 2")
    with pytest.raises(StateError, match="not a specsel state file"):
        ServerState.load(path, ServerState("tiny", [], "hedgespec", 0))

"""Running the load study: tuning sweep, evaluation sweep, the static comparison, the report.

Every decode goes through the one executor (specsel.study.executor): each load point is a Phase whose
batches are chunks of the request stream, each chunk one continuous-batching generate() call with
the point's arrivals and cap (`LoadDecoder`). Finished chunks are on disk at once, so an interrupted
sweep resumes where it stopped, and every policy restores itself from its stored chunks.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

from specsel.core.seeds import MAX_SEED
from specsel.study.config import StudyError
from specsel.study.decoding import EngineDecoder
from specsel.study.executor import Executor, Phase
from specsel.study.load_plan import AR, Baselines, LoadPoint, choose_baselines, point_runs, static_run
from specsel.study.store import ResultStore


class LoadDecoder(EngineDecoder):
    """Each chunk of requests arrives as the current load point says (`point`), at most its cap running;
    a run with the option ("static", n) decodes the chunk in static batches of n instead, one after
    another, every request there from the start (what continuous batching is compared with)."""
    point: LoadPoint | None = None

    def decode(self, spec, policy, prompts, seed):
        static = dict(spec.options).get("static")
        if static:
            return self._static(spec, policy, prompts, seed, static)
        full = spec.feedback == "full"
        return self.engine.generate(prompts, policy, max_new_tokens=self.max_new_tokens, sampling=self.sampling,
                                    seed=seed, feedback=spec.feedback,
                                    score_every=(spec.score_every or self.score_every) if full else 1,
                                    prefill_cache=self.prefills, arrivals=self.point.arrivals(len(prompts), seed),
                                    max_batch=self.point.cap)

    def _static(self, spec, policy, prompts, seed, size: int):
        from specsel.engine import GenerationResult
        tokens, records, eos, requests, wall, prefill = [], [], [], [], 0.0, 0.0
        for k, start in enumerate(range(0, len(prompts), size)):
            res = self.engine.generate(prompts[start:start + size], policy, max_new_tokens=self.max_new_tokens,
                                       sampling=self.sampling, seed=(seed + 7919 * k) % MAX_SEED,
                                       feedback=spec.feedback)
            tokens += res.tokens
            eos += res.stopped_by_eos
            records += [replace(r, row=r.row + start, time_s=r.time_s + wall) for r in res.records]
            requests += [replace(t, arrival_s=0.0, admitted_s=wall, first_token_s=t.first_token_s + wall,
                                 finish_s=t.finish_s + wall) for t in res.requests]
            wall, prefill = wall + res.wall_s, prefill + res.prefill_s
        return GenerationResult(tokens, records, wall, prefill, eos, requests)


@dataclass
class LoadConfig:
    """What a load sweep decodes (specsel load's options; recorded in OUT/config.json)."""
    points: list[LoadPoint]
    drafters: list[str]
    gammas: list[int]
    fixed: list[str]
    learners: list[str]
    chunk: int
    repeats: int = 3
    max_new_tokens: int = 64
    seed: int = 0
    baselines: Baselines | None = None
    extra: dict = field(default_factory=dict)     # the stream, the target: recorded only

    def record(self) -> dict:
        out = asdict(self)
        out["points"] = [p.name for p in self.points]
        out["baselines"] = None if self.baselines is None else self.baselines.to_dict()
        return out


def chunk_size(cfg: LoadConfig, point: LoadPoint) -> int:
    """The requests of one executor batch at `point`: --chunk, and at least four times the cap so a
    closed loop reaches its steady state."""
    return max(cfg.chunk, 4 * point.cap)


def sweep(items, store: ResultStore, decoder, cfg: LoadConfig, runs_of: Callable, progress: bool,
          repeats: int) -> None:
    """Decode every point's runs over the stream (runs_of(point) -> RunSpecs) through the executor."""
    executor = Executor(items, store, decoder, seed=cfg.seed, progress=progress)
    for point in cfg.points:
        decoder.point = point
        runs = tuple(runs_of(point))
        executor.execute(Phase(chunk_size(cfg, point), runs, repeats, f"{point.name}: {len(runs) * repeats} runs"))


def tune(items, out: Path, decoder: LoadDecoder, cfg: LoadConfig, progress: bool) -> Baselines:
    """The rule and the table from plain decoding and the fixed arms on tuning queries (closed loops),
    written to OUT/tuning/baselines.json."""
    from evaluators.load_summary import point_speedups
    closed = replace(cfg, points=[p for p in cfg.points if p.concurrency is not None] or [LoadPoint(concurrency=1)])
    store = ResultStore(out / "tuning" / "queries.jsonl", resume=True)
    sweep(items, store, decoder, closed, lambda p: point_runs(p, cfg.drafters, cfg.gammas, cfg.fixed, None, ()),
          progress, repeats=1)
    speedups = point_speedups(store.lines, closed.points, {p.name: chunk_size(cfg, p) for p in closed.points},
                              cfg.fixed)
    baselines = choose_baselines(speedups)
    (out / "tuning" / "baselines.json").write_text(json.dumps({**baselines.to_dict(), "speedups": speedups},
                                                              indent=1) + "\n")
    return baselines


def evaluate(items, out: Path, decoder, cfg: LoadConfig, progress: bool, runs_of: Callable | None = None
             ) -> ResultStore:
    """The evaluation sweep (every point's runs: `runs_of(point)`, default the plan's point_runs),
    then `fixed` at its best arm at concurrency 4 in static batches of 4."""
    from evaluators.load_summary import best_fixed_at
    store = ResultStore(out / "queries.jsonl", resume=True)
    sweep(items, store, decoder, cfg, runs_of or (
        lambda p: point_runs(p, cfg.drafters, cfg.gammas, cfg.fixed, cfg.baselines, cfg.learners)), progress,
        cfg.repeats)
    c4 = next((p for p in cfg.points if p.concurrency == 4), None)
    if c4 is not None:
        best = best_fixed_at(store.lines, c4.name, chunk_size(cfg, c4), cfg.fixed, cfg.repeats)
        if best is not None:
            decoder.point = c4
            Executor(items, store, decoder, seed=cfg.seed, progress=progress).execute(
                Phase(chunk_size(cfg, c4), (static_run(c4, best),), cfg.repeats, "c4: static batches of 4"))
    return store


def check_stamp(out: Path, stamp: dict, resume: bool) -> None:
    """OUT/config.json holds what the results depend on; a rerun with other options is refused."""
    path = out / "config.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if not resume and (out / "queries.jsonl").is_file():
            raise StudyError(f"{out} already holds a load sweep; pass --resume to continue it, or choose another --out")
        changed = [k for k in stamp if k != "baselines" and old.get(k) != stamp[k]]
        if changed:
            raise StudyError(f"{out} was run with a different {', '.join(changed)}; --resume needs the same options "
                             "(or choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**stamp, "written": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1, default=str) + "\n")


def names(points: Sequence[LoadPoint]) -> list[str]:
    return [p.name for p in points]


__all__ = ["AR", "LoadConfig", "LoadDecoder", "check_stamp", "chunk_size", "evaluate", "names", "sweep", "tune"]

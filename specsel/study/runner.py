"""Running a study: its two phases through the one executor (specsel.study.executor), then the report.

Phase 1 decodes the full-information run; phase 2 (the baseline, the fixed arms chosen from
phase 1, every learner, repeated and interleaved) follows per batch size. Every finished batch
is appended to the store before the next starts (``hook`` is called then), so an interrupted
study resumes where it stopped: the executor seeks each policy to its stream position and
restores it from its stored batches, so a resumed study plays what the uninterrupted one would
have played.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from evaluators.report import write_report
from evaluators.summary import summarize_study
from specsel.core.costs import setting_cost
from specsel.core.drafting import draft_calls
from specsel.core.runs import ROUTER_LEARNERS, STUDY_LEARNERS
from specsel.replay.fullinfo import FullInfo, SettingEval, fixed_arms_to_run
from specsel.replay.learners import regret_vs_arms, study_score_every
from specsel.study.config import StudyConfig, StudyError, warn_stderr
from specsel.study.decoding import EngineDecoder
from specsel.study.executor import Executor, Phase, RunSpec
from specsel.study.items import StudyItem
from specsel.study.plan import dynamic_gamma_drafter, fullinfo_run, live_runs, study_record
from specsel.study.policies import PolicyFactory
from specsel.study.pool import replay_exact
from specsel.study.ranks import Ranks, launched_ranks
from specsel.study.routing import load_study_router, router_folder, router_record, study_priors
from specsel.study.store import ResultStore, check_out, study_lock, write_config


def study_decoder(target, pool: dict, cfg: StudyConfig, eos_token_id, priors: dict | None) -> EngineDecoder:
    """The study's decoder: one engine over the pool, the policies built by the shared factory (the
    router rows' priors from `priors`, specsel.study.routing.study_priors)."""
    from specsel.core.sampling import Sampling
    from specsel.engine import SpecEngine

    priors = priors or {}

    def prior_of(spec: RunSpec):
        """The router rows' prior of each query (a function of its stream position), else None. The
        joint setting's factored HedgeSpec learns over drafters; its router row plays joint arms."""
        if spec.learner not in ROUTER_LEARNERS:
            return None
        over = "arms" if spec.setting == "joint" and spec.kind != "factored" else "drafters"
        table = priors[spec.setting, over]
        return lambda query: table[query]

    engine = SpecEngine(target, pool, eos_token_id=eos_token_id)
    factory = PolicyFactory(list(pool), draft_calls(pool), seed=cfg.seed, priors=prior_of)
    sampling = None if cfg.temperature == 0 else Sampling(cfg.temperature, cfg.top_p, cfg.top_k, cfg.min_p)
    return EngineDecoder(engine, factory, cfg.max_new_tokens, sampling, cfg.score_every, warm_gamma=max(cfg.gammas))


def phase2_choices(store: ResultStore, source: RunSpec, cfg: StudyConfig, config: dict, bsz: int):
    """What phase 2 runs, chosen from the full-information run: the fixed arms of each setting and
    the drafter dynamic_gamma plays (that of the best speculative joint arm by estimate)."""
    fi = FullInfo(store.run_lines(source.name, bsz), config["drafters"], cfg.seed, config["replay_exact"])
    fixed = fixed_arms_to_run(fi, {s: config["settings"][s] for s in cfg.settings}, cfg.fixed_candidates)
    dynamic = None
    if "joint" in cfg.settings:
        joint = SettingEval(fi, config["settings"]["joint"]["arms"], setting_cost("joint", fi.lines))
        dynamic = dynamic_gamma_drafter(joint.ranking)
    return fixed, dynamic


def _check_inputs(pool: dict, items: Sequence[StudyItem], cfg: StudyConfig) -> None:
    cfg.validate()
    if not items:
        raise StudyError("no queries to run; check --domains and --limit")
    if not pool:
        raise StudyError("the drafter pool is empty; pass --drafters with at least one name")
    qids = [it.qid for it in items]
    if len(set(qids)) != len(qids):
        raise StudyError("query ids are not unique; each query may appear once in the stream")


@dataclass
class StudyRun:
    """How run_study runs a study (run_study's keyword options).

    `weights` identifies the drafters' weights (e.g. drafters.pool.weights_fingerprint()): a --resume
    with other weights is refused instead of mixing their results. `router` is the folder of
    cfg.router (default: specsel.study.routing.router_folder(cfg.router)). `data` (how the stream was
    loaded: data_dir, domains, split, skip, limit) is recorded in config.json, so `specsel router fit`
    can read the queries' texts again. `fullinfo_only` stops after phase 1 (`specsel router
    collect`). `hook(run, bsz, batch)` is called after every batch is safely on disk; `warn` gets
    one-line notices; `command` is recorded in summary.json. `ranks` (default: what torchrun or
    accelerate launch set, else one process) splits the batches between processes
    (specsel.study.ranks): rank 0 merges the shards and writes the report; the others return {"rank": r}."""
    eos_token_id: int | Sequence[int] | None = None
    progress: bool = True
    hook: Callable[[RunSpec, int, int], None] | None = None
    log: Callable[[str], None] = print
    plots: bool = True
    weights: str | None = None
    router: str | Path | None = None
    data: dict | None = None
    fullinfo_only: bool = False
    warn: Callable[[str], None] = warn_stderr
    ranks: Ranks | None = None
    command: str | None = None


def run_study(target, pool: dict, items: Sequence[StudyItem], cfg: StudyConfig, out_dir: str | Path,
              resume: bool = False, **options) -> dict:
    """Run (or continue) the study and write its report; returns the summary dict (plus "table").

    `target`, `pool` ({name: Drafter}) and `items` are built by the caller, so tests can pass tiny
    models; `options` are StudyRun's. The study holds OUT/.lock while it runs (store.study_lock): a
    second study into OUT meanwhile is refused in one line."""
    import torch  # noqa: F401  (the engine needs it; keeps `import specsel.study` light for --help)

    run = StudyRun(**options)
    _check_inputs(pool, items, cfg)
    run.ranks = run.ranks if run.ranks is not None else launched_ranks()
    out = Path(out_dir)
    check_out(out, resume, lock=run.ranks.leader)   # rank 0 holds OUT/.lock (the others: .lock.rank{r})
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"--out {out}: cannot create the folder ({exc.strerror or exc}); pass a folder you can "
                         "write to") from None
    with study_lock(out, ".lock" if run.ranks.leader else f".lock.rank{run.ranks.rank}"):   # one writer per OUT
        started = _start(target, pool, items, cfg, out, resume, run)
        return _decode_and_report(target, pool, items, cfg, out, run, started)


def _start(target, pool: dict, items: Sequence[StudyItem], cfg: StudyConfig, out: Path, resume: bool,
           run: StudyRun) -> tuple[dict, dict | None, ResultStore]:
    """Record the study in OUT/config.json (a resume with other options is refused on every rank) and
    open its store; the router rows' priors when a router is used."""
    ranks, drafters = run.ranks, list(pool)
    store = ResultStore(out / "queries.jsonl", resume, rank=ranks.rank if ranks.sharded else None)
    record = study_record(cfg, drafters, items, fullinfo_run(cfg, drafters), run.weights, replay_exact(pool),
                          target=target)
    if run.data is not None:
        record["data"] = run.data
    priors = None
    if cfg.router:
        folder = Path(run.router) if run.router is not None else router_folder(cfg.router)
        priors = study_priors(load_study_router(folder), [it.text for it in items], record["settings"], drafters)
        record["router"] = router_record(folder)
    record["processes"] = ranks.world
    refused = None
    if ranks.leader:                            # refuses a resume with other options (even with no results yet)
        try:
            write_config(out, record, resume)
        except StudyError as exc:
            refused = str(exc)
    refused = ranks.from_leader(refused)        # every rank stops with rank 0's message
    if refused:
        raise StudyError(refused)
    if resume and not store.lines and ranks.leader:
        run.warn(f"--resume: nothing to resume in {out} (no finished batch); the study starts from the beginning")
    return json.loads((out / "config.json").read_text()), priors, store


def _decode_and_report(target, pool: dict, items: Sequence[StudyItem], cfg: StudyConfig, out: Path, run: StudyRun,
                       started: tuple[dict, dict | None, ResultStore]) -> dict:
    """Both phases through the executor, then (rank 0) the merged report."""
    config, priors, store = started
    ranks, drafters, source = run.ranks, list(pool), fullinfo_run(cfg, list(pool))
    executor = Executor(items, store, study_decoder(target, pool, cfg, run.eos_token_id, priors), seed=cfg.seed,
                        progress=run.progress, hook=run.hook, ranks=ranks,
                        extras={source.name: {"replay_exact": dict(config["replay_exact"])}})
    t0 = time.perf_counter()
    for bsz in cfg.bsz:
        executor.execute(Phase(bsz, (source,), desc=f"bsz {bsz} full-information run"))
        if ranks.sharded:                       # phase 2 is planned from every rank's full-information lines
            ranks.barrier()
            store.refresh()
        if not run.fullinfo_only:
            runs = tuple(live_runs(cfg, drafters, *phase2_choices(store, source, cfg, config, bsz)))
            executor.execute(Phase(bsz, runs, cfg.repeats, f"bsz {bsz} {len(runs) * cfg.repeats} runs"))
    ranks.barrier()
    run_s = time.perf_counter() - t0
    decoded = int(ranks.total(executor.decoded))
    if not ranks.leader:
        return {"rank": ranks.rank, "run_s": run_s}
    store.merge()                               # the shards of every rank (also an earlier launch's) into one file
    if run.fullinfo_only:
        run.log(f"full-information records of {len(items)} queries in {out}/queries.jsonl ({run_s:.0f} s); fit a "
                f"router on them: specsel router fit --records {out}/queries.jsonl --out ROUTER_DIR")
        return {"run_s": run_s, "queries": len(items)}
    return _report(store, config, cfg, out, run, run_s, decoded, source)


def _report(store: ResultStore, config: dict, cfg: StudyConfig, out: Path, run: StudyRun, run_s: float,
            decoded: int, source: RunSpec) -> dict:
    """The summary, the regret curve replayed on the first batch size's full-information run, the files."""
    summary = {"kind": "study", "command": run.command, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
               **summarize_study(store.lines, config)}
    summary["processes"] = {"count": run.ranks.world, "wall_s": run_s, "new_tokens": decoded,
                            "aggregate_tokens_per_s": decoded / run_s if run_s > 0 else None}
    curve = None
    first = store.run_lines(source.name, config["bsz"][0])
    if first:
        arms_for_curve = config["settings"].get("joint", config["settings"].get("drafter"))["arms"]
        curve = regret_vs_arms(FullInfo(first, config["drafters"], cfg.seed, config["replay_exact"]), arms_for_curve,
                               [l for l in config["learners"] if l in STUDY_LEARNERS], cfg.seed,
                               score_every=study_score_every(config))
    text = write_report(summary, out, curve, plots=run.plots)
    run.log(text)
    run.log(f"results in {out}/ (summary.csv, lossless.json, queries.jsonl, plots); decoding took {run_s:.0f} s")
    return {**summary, "table": text, "regret_vs_arms": curve, "run_s": run_s}

"""Running a study: decode every run of the plan batch by batch, store each batch, report.

Every finished batch is appended to the store before the next starts (``hook`` is called
then), so an interrupted study resumes where it stopped. Learners are numbered by stream
position (``LearnerPolicy`` seeds per-query learners by it) and a throughput learner's
step-cost model is re-fed the stored rounds (``warm_cost_model``), so a resumed study plays
what the uninterrupted one would have played.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from evaluators.fullinfo import FullInfo, SettingEval, fixed_arms_to_run
from evaluators.records import to_dict
from evaluators.report import write_report
from evaluators.summary import summarize_study
from specsel.core.arms import Arm
from specsel.core.costs import setting_cost
from specsel.core.drafting import draft_calls
from specsel.core.runs import OBJECTIVE, ROUTER_LEARNERS, STUDY_LEARNERS, repeat_run
from specsel.core.seeds import batch_seed
from specsel.study.config import StudyConfig, StudyError, warn_stderr
from specsel.study.items import StudyItem
from specsel.study.offline import regret_vs_arms, study_score_every
from specsel.study.plan import RunSpec, dynamic_gamma_drafter, fullinfo_run, live_runs, stream_batches, study_record
from specsel.study.pool import replay_exact
from specsel.study.ranks import Ranks, launched_ranks
from specsel.study.routing import load_study_router, router_folder, router_record, study_priors
from specsel.study.store import ResultStore, check_out, study_lock, write_config


def warm_cost_model(policy, lines: Sequence[dict]) -> None:
    """Feed a throughput policy's step-cost model the rounds of batches it already ran, in the
    order LearnerPolicy.observe saw them, so a resumed run continues from the same state."""
    by_batch: dict[int, list[dict]] = {}
    for line in lines:
        by_batch.setdefault(line["batch"], []).append(line)
    for b in sorted(by_batch):
        recs = sorted((r for l in by_batch[b] for r in l["records"]), key=lambda r: (r["round"], r["row"]))
        for k in sorted({r["round"] for r in recs}):
            policy.cost.observe_round([r for r in recs if r["round"] == k], policy.drafters)


def warm_stream_prior(policy, lines: Sequence[dict]) -> None:
    """Fold the queries a FactoredHedge run already decoded into its stream prior (eq. 22), so a
    resumed run starts each new query where an uninterrupted one would (exact for greedy records,
    whose acceptances are 0 or 1)."""
    from types import SimpleNamespace
    for line in sorted(lines, key=lambda line: (line["batch"], line["index"])):
        policy.remember([SimpleNamespace(**r) for r in line["records"]])


class _Decoder:
    """Decodes runs of the plan batch by batch into the store (one study, one engine)."""

    def __init__(self, target, pool: dict, items: Sequence[StudyItem], cfg: StudyConfig, store: ResultStore,
                 config: dict, source: RunSpec, eos_token_id, progress: bool, hook, priors: dict | None = None,
                 ranks: Ranks = Ranks()):
        from specsel.core.sampling import Sampling
        from specsel.engine import PrefillCache, SpecEngine

        self.items, self.cfg, self.store, self.config, self.source = items, cfg, store, config, source
        self.drafters = list(pool)
        self.calls = draft_calls(pool)      # drafters of one family draft in one call: learners cost it once
        self.engine = SpecEngine(target, pool, eos_token_id=eos_token_id)
        self.prefills = PrefillCache()      # every run of a batch starts from one target prefill
        self.sampling = None if cfg.temperature == 0 else Sampling(cfg.temperature, cfg.top_p, cfg.top_k, cfg.min_p)
        self.progress, self.hook = progress and ranks.leader, hook    # one progress bar: rank 0's share
        self.ranks = ranks
        self.decoded = 0                    # new tokens this process decoded (aggregate throughput)
        self.priors = priors or {}          # the router rows' priors (specsel.study.routing.study_priors)
        self.warmed = False

    def policy_for(self, spec: RunSpec, bsz: int):
        from specsel.learners.policy import LearnerPolicy

        if spec.kind == "autoregressive":
            return Arm.autoregressive()
        if spec.kind == "dynamic_gamma":
            from specsel.learners.dynamic_gamma import DynamicGamma
            return DynamicGamma(spec.arm)
        if spec.kind in ("fixed", "fullinfo"):
            return Arm.parse(spec.arm)
        priors = self.prior_of(spec)
        if spec.learner in ("hedgespec", "router_hedgespec") and spec.setting == "joint" \
                and self.cfg.joint_hedgespec == "factored" and spec != self.source:
            from specsel.learners.factored import FactoredHedge
            policy = FactoredHedge(self.drafters, self.cfg.gammas, seed=self.cfg.seed, draft_calls=self.calls,
                                   learner=spec.learner, priors=priors)
            done = self.own_lines(spec.name, bsz)
            warm_cost_model(policy, done)
            warm_stream_prior(policy, done)
            return policy
        # the full-information source scores every drafter (the oracle is computed from it)
        policy = LearnerPolicy(spec.learner, [Arm.parse(a) for a in self.cfg.arms(spec.setting, self.drafters)],
                               self.drafters, objective=OBJECTIVE[spec.setting], seed=self.cfg.seed,
                               lazy_scoring=False if spec == self.source else None, draft_calls=self.calls,
                               priors=priors)
        if policy.cost is not None:
            warm_cost_model(policy, self.own_lines(spec.name, bsz))
        return policy

    def own_lines(self, run: str, bsz: int) -> list[dict]:
        """The stored lines of this process's batches: what a learner shared across batches saw
        (with several processes each has its own, fed only its share of the stream)."""
        return [line for line in self.store.run_lines(run, bsz) if self.ranks.owns(line["batch"])]

    def prior_of(self, spec: RunSpec):
        """The router rows' prior of each query (a function of its stream position), else None. The
        joint setting's factored HedgeSpec learns over drafters; its router row plays joint arms."""
        if spec.learner not in ROUTER_LEARNERS:
            return None
        over = "arms" if spec.setting == "joint" and (spec.learner == "router" or self.cfg.joint_hedgespec == "arms") \
            else "drafters"
        table = self.priors[spec.setting, over]
        return lambda query: table[query]

    def warm_up(self) -> None:
        """One-time costs (allocator, kernels) stay out of the first timed batch."""
        if self.warmed:
            return
        short = self.items[0].prompt[-16:]
        self.engine.generate([short], Arm.autoregressive(), max_new_tokens=4)
        for d in self.drafters:
            self.engine.generate([short], Arm(d, max(self.cfg.gammas)), max_new_tokens=4)
        self.warmed = True

    def query_lines(self, spec: RunSpec, bsz: int, b: int, batch: list[int], res) -> list[dict]:
        """One line per query of the batch; the full-information run's lines say which drafters
        replay exactly, so every reader of the file knows (evaluators.records.replay_exact_of)."""
        items = self.items
        shared = {"run": spec.name, "setting": spec.setting, "learner": spec.learner, "arm": spec.arm,
                  "feedback": spec.feedback, "bsz": bsz, "batch": b,
                  "batch_qids": [items[i].qid for i in batch], "batch_wall_s": res.wall_s,
                  "batch_prefill_s": res.prefill_s, "batch_new_tokens": res.new_tokens}
        if spec == self.source:
            shared["replay_exact"] = dict(self.config["replay_exact"])
        lines = []
        for row, i in enumerate(batch):
            recs = sorted((to_dict(r) for r in res.records if r.row == row), key=lambda r: r["round"])
            lines.append({**shared, "index": i, "qid": items[i].qid, "domain": items[i].domain,
                          "tokens": res.tokens[row], "eos": res.stopped_by_eos[row], "records": recs})
        return lines

    def execute(self, runs: list[RunSpec], bsz: int, batches: list[list[int]], desc: str, rotate: bool) -> None:
        """Decode every batch of every run not yet in the store; with `rotate` the run order
        turns by one each batch (machine drift spreads evenly over the runs)."""
        from tqdm.auto import tqdm

        from specsel.learners.policy import LearnerPolicy

        store, cfg, items = self.store, self.cfg, self.items
        todo = [(b, spec) for b in range(len(batches)) for spec in runs
                if self.ranks.owns(b) and (spec.name, bsz, b) not in store.done]
        if not todo:
            return
        self.warm_up()
        policies = {spec.name: self.policy_for(spec, bsz) for spec in runs}
        bar = tqdm(total=sum(len(batches[b]) for b, _ in todo), desc=desc, unit="query", disable=not self.progress,
                   dynamic_ncols=True)
        for b, batch in enumerate(batches):
            if not self.ranks.owns(b):
                continue
            order = runs[b % len(runs):] + runs[:b % len(runs)] if rotate else runs
            for spec in order:
                if (spec.name, bsz, b) in store.done:
                    continue
                bar.set_postfix_str(spec.name)
                policy = policies[spec.name]
                if isinstance(policy, LearnerPolicy):
                    policy.seek(batch[0])      # query number = stream position (learner seeds)
                res = self.engine.generate([items[i].prompt for i in batch], policy,
                                           max_new_tokens=cfg.max_new_tokens, sampling=self.sampling,
                                           seed=batch_seed(cfg.seed, bsz, b), feedback=spec.feedback,
                                           score_every=cfg.score_every if spec.feedback == "full" else 1,
                                           prefill_cache=self.prefills)
                store.append(self.query_lines(spec, bsz, b, batch, res))
                self.decoded += res.new_tokens
                bar.update(len(batch))
                if self.hook is not None:
                    self.hook(spec, bsz, b)
        bar.close()


def _check_inputs(pool: dict, items: Sequence[StudyItem], cfg: StudyConfig) -> None:
    cfg.validate()
    if not items:
        raise StudyError("no queries to run; check --domains and --limit")
    if not pool:
        raise StudyError("the drafter pool is empty; pass --drafters with at least one name")
    qids = [it.qid for it in items]
    if len(set(qids)) != len(qids):
        raise StudyError("query ids are not unique; each query may appear once in the stream")


def run_study(target, pool: dict, items: Sequence[StudyItem], cfg: StudyConfig, out_dir: str | Path,
              resume: bool = False, eos_token_id=None, progress: bool = True,
              hook: Callable[[RunSpec, int, int], None] | None = None, log: Callable[[str], None] = print,
              plots: bool = True, weights: str | None = None, router=None, data: dict | None = None,
              fullinfo_only: bool = False, warn: Callable[[str], None] = warn_stderr,
              ranks: Ranks | None = None) -> dict:
    """Run (or continue) the study and write its report; returns the summary dict (plus "table").

    `weights` identifies the drafters' weights (e.g. drafters.pool.weights_fingerprint()): a
    --resume with other weights is refused instead of mixing their results. `router` is the
    folder of cfg.router (default: specsel.study.routing.router_folder(cfg.router)). `data` (how
    the stream was loaded: data_dir, domains, split, skip, limit) is recorded in config.json, so
    `specsel router fit` can read the queries' texts again. `fullinfo_only` stops after phase 1
    (`specsel router collect`: full-information records, no table).

    `target`, `pool` ({name: Drafter}) and `items` are built by the caller, so tests can pass tiny
    models. `hook(run, bsz, batch)` is called after every batch is safely on disk. `warn` gets
    one-line notices (a --resume with nothing to resume). The study holds OUT/.lock while it runs
    (store.study_lock): a second study into OUT meanwhile is refused in one line.

    `ranks` (default: what torchrun or accelerate launch set, else one process) splits the
    batches between processes (specsel.study.ranks): each appends to its own shard, they meet
    after each full-information run, and rank 0 merges the shards and writes the report; the
    other ranks return {"rank": r}.
    """
    import torch  # noqa: F401  (the engine needs it; keeps `import specsel.study` light for --help)

    _check_inputs(pool, items, cfg)
    ranks = ranks if ranks is not None else launched_ranks()
    out = Path(out_dir)
    check_out(out, resume, lock=ranks.leader)   # rank 0 holds OUT/.lock (the others: .lock.rank{r})
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StudyError(f"--out {out}: cannot create the folder ({exc.strerror or exc}); pass a folder you can "
                         "write to") from None
    with study_lock(out, ".lock" if ranks.leader else f".lock.rank{ranks.rank}"):   # one writer per OUT
        return _run_locked(target, pool, items, cfg, out, resume, eos_token_id, progress, hook, log, plots, weights,
                           router, data, fullinfo_only, warn, ranks)


def _run_locked(target, pool: dict, items: Sequence[StudyItem], cfg: StudyConfig, out: Path, resume: bool,
                eos_token_id, progress: bool, hook, log, plots: bool, weights, router, data, fullinfo_only: bool,
                warn, ranks: Ranks) -> dict:
    """run_study once it holds OUT/.lock: record the config, decode both phases, report."""
    drafters = list(pool)
    store = ResultStore(out / "queries.jsonl", resume, rank=ranks.rank if ranks.sharded else None)
    source = fullinfo_run(cfg, drafters)
    record = study_record(cfg, drafters, items, source, weights, replay_exact(pool), target=target)
    if data is not None:
        record["data"] = data
    priors = None
    if cfg.router:
        folder = Path(router) if router is not None else router_folder(cfg.router)
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
        warn(f"--resume: nothing to resume in {out} (no finished batch); the study starts from the beginning")
    config = json.loads((out / "config.json").read_text())
    decoder = _Decoder(target, pool, items, cfg, store, config, source, eos_token_id, progress, hook, priors, ranks)

    t0 = time.perf_counter()
    for bsz in cfg.bsz:
        batches = stream_batches(len(items), bsz)
        decoder.execute([source], bsz, batches, f"bsz {bsz} full-information run", rotate=False)
        if ranks.sharded:                       # phase 2 is planned from every rank's full-information lines
            ranks.barrier()
            store.refresh()
        if fullinfo_only:
            continue
        fi = FullInfo(store.run_lines(source.name, bsz), drafters, cfg.seed, config["replay_exact"])
        fixed = fixed_arms_to_run(fi, {s: config["settings"][s] for s in cfg.settings}, cfg.fixed_candidates)
        dynamic = None
        if "joint" in cfg.settings:
            joint = SettingEval(fi, config["settings"]["joint"]["arms"], setting_cost("joint", fi.lines))
            dynamic = dynamic_gamma_drafter(joint.ranking)
        runs = [replace(spec, name=repeat_run(spec.name, k)) for k in range(cfg.repeats)
                for spec in live_runs(cfg, fixed, source, dynamic)]
        decoder.execute(runs, bsz, batches, f"bsz {bsz} {len(runs)} runs", rotate=True)
    ranks.barrier()
    run_s = time.perf_counter() - t0
    decoded = int(ranks.total(decoder.decoded))
    if not ranks.leader:
        return {"rank": ranks.rank, "run_s": run_s}
    store.merge()                               # the shards of every rank (also an earlier launch's) into one file
    if fullinfo_only:
        log(f"full-information records of {len(items)} queries in {out}/queries.jsonl ({run_s:.0f} s); fit a "
            f"router on them: specsel router fit --records {out}/queries.jsonl --out ROUTER_DIR")
        return {"run_s": run_s, "queries": len(items)}

    summary = summarize_study(store.lines, config)
    summary["processes"] = {"count": ranks.world, "wall_s": run_s, "new_tokens": decoded,
                            "aggregate_tokens_per_s": decoded / run_s if run_s > 0 else None}
    curve = None
    first = store.run_lines(source.name, config["bsz"][0])
    if first:
        arms_for_curve = config["settings"].get("joint", config["settings"].get("drafter"))["arms"]
        curve = regret_vs_arms(FullInfo(first, drafters, cfg.seed, config["replay_exact"]), arms_for_curve,
                               [l for l in config["learners"] if l in STUDY_LEARNERS], cfg.seed,
                               score_every=study_score_every(config))
    text = write_report(summary, out, curve, plots=plots)
    log(text)
    log(f"results in {out}/ (summary.csv, lossless.json, queries.jsonl, plots); decoding took {run_s:.0f} s")
    return {**summary, "table": text, "regret_vs_arms": curve, "run_s": run_s}

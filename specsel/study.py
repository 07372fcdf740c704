"""The domain study (issue 5): every selection rule on one mixed stream of domain prompts.

    python recipes/domain_eval.py --data-dir ../shared/data --domains math,humaneval,medqa --limit 30 --out results/
    specsel eval ...                     (the same command)

For every batch size in ``--bsz`` the same prompts, in the same batches, with the same seeds,
are decoded by

* phase 1, the full-information run: HedgeSpec in the ``drafter`` setting with
  ``feedback="full"`` (or a fixed arm with full feedback when HedgeSpec is not asked for).
  Its records hold every drafter's acceptance at every committed position, so the oracle
  (per-query best arm), the best fixed arm over the stream and every fixed arm's round count
  follow offline (``evaluators.summary``), exactly for greedy decoding;
* phase 2, interleaved batch by batch (rotating order, so machine drift spreads evenly):
  the autoregressive baseline, the best fixed arm(s) chosen from phase 1 (``drafter``: the
  exact best arm; ``joint``: the ``--fixed-candidates`` best by estimated cost, the fastest
  measured one is reported), and every learner of every setting (with the throughput
  objective, HedgeSpec scores lazily: each row's favourite drafter and the played ones,
  every drafter in refresh windows, specsel.learners.policy).

Every finished batch appends one JSON line per query to ``OUT/queries.jsonl`` in a single
write followed by fsync, keyed by (run, bsz, batch); ``--resume`` skips what is there (a torn
last line is cut off first), so an interrupted study loses nothing it finished. Learners are
numbered by stream position (``LearnerPolicy`` seeds per-query learners by it) and a
throughput learner's step-cost model is re-fed the stored rounds, so a resumed study plays
what the uninterrupted one would have played.

Outputs: the table (printed and ``table.txt``), ``summary.csv``, ``summary.json``,
``lossless.json``, ``queries.jsonl`` (per-query round records), ``config.json`` and the plots
``throughput_vs_bsz.png``, ``mat_per_domain.png``, ``regret_vs_arms.png``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from evaluators.summary import LEARNERS, OBJECTIVE, SETTINGS, arm_name, parse_arm, run_name
from specsel.core.seeds import batch_seed

CONFIG_VERSION = 1
# options that must not change between a study and its --resume (they change what a run outputs)
IDENTITY = ("target", "drafters", "weights", "max_new_tokens", "temperature", "top_p", "seed", "gamma", "gammas",
            "queries", "score_every")


class StudyError(ValueError):
    """Bad study options or output folder; the message is one line that names the fix."""


@dataclass
class StudyItem:
    """One query of the stream: its id, its domain and its prompt token ids."""
    qid: str
    domain: str
    prompt: list[int]


@dataclass
class StudyConfig:
    settings: Sequence[str] = SETTINGS
    learners: Sequence[str] = LEARNERS
    gamma: int = 4                              # drafter setting: every drafter at this gamma
    gammas: Sequence[int] = (1, 2, 4)           # joint setting: drafters x gammas
    bsz: Sequence[int] = (4,)
    max_new_tokens: int = 64
    temperature: float = 0.0                    # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    fixed_candidates: int = 2                   # joint: fixed arms run live (best by estimate); 0 = all
    score_every: int = 3                        # full information: EAGLE heads score this many rounds at once
    target: str = ""                            # recorded in config.json only

    def validate(self) -> None:
        bad = [s for s in self.settings if s not in SETTINGS]
        if bad or not self.settings:
            raise StudyError(f"unknown setting(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(SETTINGS)}")
        bad = [l for l in self.learners if l not in LEARNERS]
        if bad:
            raise StudyError(f"unknown learner(s) {', '.join(bad)}; choose from {', '.join(LEARNERS)}")
        for name, values in (("--gamma", [self.gamma]), ("--gammas", self.gammas)):
            if not values or any(not isinstance(g, int) or g < 1 for g in values):
                raise StudyError(f"{name} must be integers >= 1 (got {list(values)}); e.g. --gammas 1,2,4")
        if not self.bsz or any(not isinstance(b, int) or b < 1 for b in self.bsz):
            raise StudyError(f"--bsz must be integers >= 1 (got {list(self.bsz)}); e.g. --bsz 1,4")
        if self.max_new_tokens < 1:
            raise StudyError(f"--max-new-tokens must be >= 1 (got {self.max_new_tokens})")
        if self.temperature < 0:
            raise StudyError(f"--temperature must be >= 0 (got {self.temperature}); 0 means greedy")
        if not 0 < self.top_p <= 1:
            raise StudyError(f"--top-p must be in (0, 1] (got {self.top_p})")
        if not isinstance(self.score_every, int) or self.score_every < 1:
            raise StudyError(f"--score-every must be an integer >= 1 (got {self.score_every}); 1 scores every round")
        if self.fixed_candidates < 0:
            raise StudyError(f"--fixed-candidates must be >= 0 (got {self.fixed_candidates}); 0 runs every fixed arm")

    def arms(self, setting: str, drafters: Sequence[str]) -> list[str]:
        """The setting's arms, longest gamma first per drafter: a learner plays arm 0 until its
        first feedback arrives (up to 2 gamma tokens later), and the longest draft of the
        first drafter commits the most tokens while it waits."""
        gammas = [self.gamma] if setting == "drafter" else sorted(set(self.gammas), reverse=True)
        return [arm_name(d, g) for d in drafters for g in gammas]


@dataclass(frozen=True)
class RunSpec:
    name: str
    kind: str                       # autoregressive | fixed | fullinfo | learner
    arm: str | None = None
    setting: str | None = None
    learner: str | None = None

    @property
    def feedback(self) -> str:
        return "full" if self.kind == "fullinfo" or self.learner == "hedgespec" else "bandit"


# ----------------------------------------------------------------------------- results on disk


class ResultStore:
    """OUT/queries.jsonl: one JSON line per finished query, appended a batch at a time."""

    def __init__(self, path: str | Path, resume: bool):
        self.path = Path(path)
        self.lines: list[dict] = []
        if self.path.exists() and self.path.stat().st_size > 0:
            if not resume:
                raise StudyError(f"{self.path.parent} already holds results ({self.path.name}); pass --resume to "
                                 "continue them, or choose another --out")
            self._cut_torn_tail()
            from evaluators.records import read_records
            self.lines = read_records(self.path)
        from evaluators.summary import done_batches
        self.done = done_batches(self.lines)

    def _cut_torn_tail(self) -> None:
        """An interrupted write may leave a partial last line: cut it so appends start on a fresh line."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, lines: list[dict]) -> None:
        text = "".join(json.dumps(l) + "\n" for l in lines)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.lines.extend(lines)
        if lines:
            self.done.add((lines[0]["run"], lines[0]["bsz"], lines[0]["batch"]))

    def run_lines(self, run: str, bsz: int) -> list[dict]:
        from evaluators.summary import index_runs
        return list(index_runs(l for l in self.lines if l["run"] == run and l["bsz"] == bsz).get((run, bsz), {}).values())


def _write_config(out: Path, config: dict, resume: bool) -> None:
    path = out / "config.json"
    if resume and path.exists():
        old = json.loads(path.read_text())
        for key in IDENTITY:
            if old.get(key) != config.get(key):
                what = {"queries": "the query stream (--domains/--limit/--seed/--data-dir)",
                        "weights": "set of drafter weights (retrained or another --pool)"}.get(key, key)
                raise StudyError(f"{out} was run with a different {what}; --resume needs the same options "
                                 "(or choose another --out)")
        # settings, learners and batch sizes may grow on resume: keep the union
        config["bsz"] = sorted(set(old.get("bsz", [])) | set(config["bsz"]))
        config["learners"] = [l for l in LEARNERS if l in set(old.get("learners", [])) | set(config["learners"])]
        config["settings"] = {**old.get("settings", {}), **config["settings"]}
    tmp = path.with_name("config.json.tmp")
    tmp.write_text(json.dumps(config, indent=1) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- the study


def fullinfo_run(cfg: StudyConfig, drafters: Sequence[str]) -> RunSpec:
    if "hedgespec" in cfg.learners:
        setting = "drafter" if "drafter" in cfg.settings else "joint"
        return RunSpec(run_name("learner", setting, "hedgespec"), "learner", setting=setting, learner="hedgespec")
    arm = arm_name(drafters[0], cfg.gamma)
    return RunSpec(run_name("fullinfo", arm=arm), "fullinfo", arm=arm)


def _warm_cost(policy, lines: Sequence[dict]) -> None:
    """Feed a throughput policy's step-cost model the rounds of batches it already ran, in the
    order LearnerPolicy.observe saw them, so a resumed run continues from the same state."""
    by_batch: dict[int, list[dict]] = {}
    for line in lines:
        by_batch.setdefault(line["batch"], []).append(line)
    for b in sorted(by_batch):
        recs = sorted((r for l in by_batch[b] for r in l["records"]), key=lambda r: (r["round"], r["row"]))
        for k in sorted({r["round"] for r in recs}):
            rnd = [r for r in recs if r["round"] == k]
            policy.cost.observe_verify(max(r["drafted"] for r in rnd), rnd[0]["verify_s"])
            for r in rnd:
                if r["drafter"] is not None and r["drafted"]:
                    policy.cost.observe_draft(policy.drafters.index(r["drafter"]), r["draft_s"] / r["drafted"])


def run_study(target, pool: dict, items: Sequence[StudyItem], cfg: StudyConfig, out_dir: str | Path,
              resume: bool = False, eos_token_id=None, progress: bool = True,
              hook: Callable[[RunSpec, int, int], None] | None = None, log: Callable[[str], None] = print,
              plots: bool = True, weights: str | None = None) -> dict:
    """Run (or continue) the study and write its report; returns the summary dict (plus "table").

    `weights` identifies the drafters' weights (e.g. drafters.pool.weights_fingerprint()): a
    --resume with other weights is refused instead of mixing their results.

    `target`, `pool` ({name: Drafter}) and `items` are built by the caller, so tests can pass tiny
    models. `hook(run, bsz, batch)` is called after every batch is safely on disk.
    """
    import torch  # noqa: F401  (the engine needs it; keeps `import specsel.study` light for --help)
    from tqdm.auto import tqdm

    from evaluators.records import to_dict
    from evaluators.report import write_report
    from evaluators.summary import FullInfo, fixed_arms_to_run, regret_vs_arms, summarize_study
    from specsel import Arm, Sampling, SpecEngine
    from specsel.learners.policy import LearnerPolicy

    cfg.validate()
    if not items:
        raise StudyError("no queries to run; check --domains and --limit")
    if not pool:
        raise StudyError("the drafter pool is empty; pass --drafters with at least one name")
    qids = [it.qid for it in items]
    if len(set(qids)) != len(qids):
        raise StudyError("query ids are not unique; each query may appear once in the stream")
    drafters = list(pool)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out / "queries.jsonl", resume)
    source = fullinfo_run(cfg, drafters)
    config = {**asdict(cfg), "version": CONFIG_VERSION, "drafters": drafters, "weights": weights,
              "settings": {s: {"arms": cfg.arms(s, drafters), "objective": OBJECTIVE[s]} for s in cfg.settings},
              "bsz": list(cfg.bsz), "learners": list(cfg.learners), "gammas": list(cfg.gammas),
              "queries": [{"qid": it.qid, "domain": it.domain, "index": i} for i, it in enumerate(items)],
              "fullinfo_run": source.name, "replay_exact": {d: pool[d].capabilities.replay_exact for d in drafters}}
    _write_config(out, config, resume)
    config = json.loads((out / "config.json").read_text())

    engine = SpecEngine(target, pool, eos_token_id=eos_token_id)
    sampling = None if cfg.temperature == 0 else Sampling(cfg.temperature, cfg.top_p)
    warmed = False

    def policy_for(spec: RunSpec, bsz: int):
        if spec.kind == "autoregressive":
            return Arm.autoregressive()
        if spec.kind in ("fixed", "fullinfo"):
            return Arm(*parse_arm(spec.arm))
        # the full-information source scores every drafter (the oracle is computed from it)
        policy = LearnerPolicy(spec.learner, [Arm(*parse_arm(a)) for a in cfg.arms(spec.setting, drafters)],
                               drafters, objective=OBJECTIVE[spec.setting], seed=cfg.seed,
                               lazy_scoring=False if spec == source else None)
        if policy.cost is not None:
            _warm_cost(policy, store.run_lines(spec.name, bsz))
        return policy

    def execute(runs: list[RunSpec], bsz: int, batches: list[list[int]], desc: str, rotate: bool) -> None:
        nonlocal warmed
        todo = [(b, spec) for b in range(len(batches)) for spec in runs if (spec.name, bsz, b) not in store.done]
        if not todo:
            return
        if not warmed:   # one-time costs (allocator, kernels) stay out of the first timed batch
            short = items[0].prompt[-16:]
            engine.generate([short], Arm.autoregressive(), max_new_tokens=4)
            for d in drafters:
                engine.generate([short], Arm(d, max(cfg.gammas)), max_new_tokens=4)
            warmed = True
        policies = {spec.name: policy_for(spec, bsz) for spec in runs}
        bar = tqdm(total=sum(len(batches[b]) for b, _ in todo), desc=desc, unit="query", disable=not progress,
                   dynamic_ncols=True)
        for b, batch in enumerate(batches):
            order = runs[b % len(runs):] + runs[:b % len(runs)] if rotate else runs
            for spec in order:
                if (spec.name, bsz, b) in store.done:
                    continue
                bar.set_postfix_str(spec.name)
                policy = policies[spec.name]
                if isinstance(policy, LearnerPolicy):
                    policy.seek(batch[0])      # query number = stream position (learner seeds)
                res = engine.generate([items[i].prompt for i in batch], policy, max_new_tokens=cfg.max_new_tokens,
                                      sampling=sampling, seed=batch_seed(cfg.seed, bsz, b), feedback=spec.feedback,
                                      score_every=cfg.score_every)
                shared = {"run": spec.name, "setting": spec.setting, "learner": spec.learner, "arm": spec.arm,
                          "feedback": spec.feedback, "bsz": bsz, "batch": b,
                          "batch_qids": [items[i].qid for i in batch], "batch_wall_s": res.wall_s,
                          "batch_prefill_s": res.prefill_s, "batch_new_tokens": res.new_tokens}
                lines = []
                for row, i in enumerate(batch):
                    recs = sorted((to_dict(r) for r in res.records if r.row == row), key=lambda r: r["round"])
                    lines.append({**shared, "index": i, "qid": items[i].qid, "domain": items[i].domain,
                                  "tokens": res.tokens[row], "eos": res.stopped_by_eos[row], "records": recs})
                store.append(lines)
                bar.update(len(batch))
                if hook is not None:
                    hook(spec, bsz, b)
        bar.close()

    t0 = time.perf_counter()
    for bsz in cfg.bsz:
        batches = [list(range(i, min(i + bsz, len(items)))) for i in range(0, len(items), bsz)]
        execute([source], bsz, batches, f"bsz {bsz} full-information run", rotate=False)
        fi = FullInfo(store.run_lines(source.name, bsz), drafters, cfg.seed, config["replay_exact"])
        fixed = fixed_arms_to_run(fi, {s: config["settings"][s] for s in cfg.settings}, cfg.fixed_candidates)
        runs = [RunSpec("autoregressive", "autoregressive", arm="autoregressive")]
        for arm in dict.fromkeys(a for s in cfg.settings for a in fixed[s]):
            runs.append(RunSpec(run_name("fixed", arm=arm), "fixed", arm=arm))
        for setting in cfg.settings:
            for learner in cfg.learners:
                spec = RunSpec(run_name("learner", setting, learner), "learner", setting=setting, learner=learner)
                if spec.name != source.name:
                    runs.append(spec)
        execute(runs, bsz, batches, f"bsz {bsz} {len(runs)} runs", rotate=True)
    run_s = time.perf_counter() - t0

    summary = summarize_study(store.lines, config)
    curve = None
    first = store.run_lines(source.name, config["bsz"][0])
    if first:
        arms_for_curve = config["settings"].get("joint", config["settings"].get("drafter"))["arms"]
        curve = regret_vs_arms(FullInfo(first, drafters, cfg.seed, config["replay_exact"]), arms_for_curve,
                               config["learners"], cfg.seed)
    text = write_report(summary, out, curve, plots=plots)
    log(text)
    log(f"results in {out}/ (summary.csv, lossless.json, queries.jsonl, plots); decoding took {run_s:.0f} s")
    return {**summary, "table": text, "regret_vs_arms": curve, "run_s": run_s}


# ----------------------------------------------------------------------------- building blocks for the CLI


def load_pool(target, names: Sequence[str] | None = None, pool_path: str | None = None) -> dict:
    """{name: Drafter}: drafters.pool.default_pool, or `build_pool(target)` of a Python file;
    `names` keeps a subset (in the given order)."""
    if pool_path is None:
        from drafters.pool import default_pool
        return default_pool(target, names)
    path = Path(pool_path).expanduser()
    if not path.is_file():
        raise StudyError(f"--pool {pool_path}: no such file; pass the path of a Python file defining build_pool(target)")
    spec = importlib.util.spec_from_file_location(f"specsel_user_pool_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "build_pool", None)):
        raise StudyError(f"--pool {pool_path}: defines no build_pool(target); add one returning {{name: Drafter}}")
    pool = module.build_pool(target)
    if not isinstance(pool, dict) or not pool:
        raise StudyError(f"--pool {pool_path}: build_pool(target) must return a non-empty dict {{name: Drafter}}")
    if names is not None:
        unknown = [n for n in names if n not in pool]
        if unknown:
            raise StudyError(f"unknown drafter(s) {', '.join(unknown)}; the pool from {pool_path} has: {', '.join(pool)}")
        pool = {n: pool[n] for n in names}
    for name, drafter in pool.items():
        drafter.name = name
    return pool


def known_pool_names() -> list[str]:
    """Every name drafters.pool.default_pool can build (its default set and the optional members)."""
    from drafters import pool
    try:
        return list(pool.pool_names(include_optional=True))
    except TypeError:
        return list(pool.pool_names())


def load_items(tokenizer, domains: Sequence[str], data_dir=None, limit: int | None = None,
               seed: int = 0, skip: int = 0) -> list[StudyItem]:
    """Queries of every domain (`limit` of each after the first `skip`), interleaved into one
    seeded stream, encoded with the target's chat template."""
    from specsel.data import encode_prompts, load_domain, mixed_stream

    by_domain = {d: load_domain(d, data_dir, limit=None if limit is None else skip + limit)[skip:] for d in domains}
    stream = mixed_stream(by_domain, seed) if len(domains) > 1 else by_domain[domains[0]]
    prompts = encode_prompts(tokenizer, stream)
    return [StudyItem(q.qid, q.domain, p) for q, p in zip(stream, prompts)]


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise StudyError(f"{option} takes comma-separated integers (got {text!r}); e.g. {option} 1,2,4") from None


def add_eval_arguments(ap: argparse.ArgumentParser) -> None:
    from specsel.modeling.target import EMBEDDED_DEFAULT

    ap.add_argument("--target", default=EMBEDDED_DEFAULT, help="local dir, hub id, or the embedded default")
    ap.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: by device)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when visible)")
    ap.add_argument("--data-dir", default=None, help="folder laid out like shared/data (default: hub data sets)")
    ap.add_argument("--domains", default="math,humaneval,medqa", help="comma list of math, humaneval, medqa, gsm8k")
    ap.add_argument("--limit", type=int, default=3, help="queries per domain (the first N of each eval split)")
    ap.add_argument("--pool", default=None, help="Python file defining build_pool(target) (default: drafters.pool)")
    ap.add_argument("--drafters", default=None, help="comma list of pool drafters (default: the whole pool)")
    ap.add_argument("--settings", default="drafter,joint", help="drafter (drafters at --gamma, accepted length) "
                    "and/or joint (drafters x --gammas, tokens/s)")
    ap.add_argument("--learners", default=",".join(LEARNERS), help=f"comma list of {', '.join(LEARNERS)}")
    ap.add_argument("--gamma", default="4", help="speculation length of the drafter setting")
    ap.add_argument("--gammas", default="1,2,4", help="speculation lengths of the joint setting")
    ap.add_argument("--bsz", default="4", help="comma list of batch sizes")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0, help="stream order, learner seeds, sampling seeds")
    ap.add_argument("--fixed-candidates", type=int, default=2, help="joint setting: fixed arms run live, the best by "
                    "the full-information estimate (0 = every arm, both settings)")
    ap.add_argument("--score-every", type=int, default=3, help="full information, greedy: EAGLE heads score the "
                    "committed tokens of this many rounds in one forward (the learner hears of them then)")
    ap.add_argument("--out", default="results", help="output folder")
    ap.add_argument("--resume", action="store_true", help="continue the study in --out, skipping finished batches")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def config_from_args(args) -> StudyConfig:
    gamma = _ints(args.gamma, "--gamma")
    if len(gamma) != 1:
        raise StudyError(f"--gamma takes one integer (got {args.gamma!r}); use --gammas for the joint setting")
    cfg = StudyConfig(settings=_csv(args.settings), learners=_csv(args.learners), gamma=gamma[0],
                      gammas=_ints(args.gammas, "--gammas"), bsz=_ints(args.bsz, "--bsz"),
                      max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                      seed=args.seed, fixed_candidates=args.fixed_candidates, target=args.target,
                      score_every=args.score_every)
    cfg.validate()
    return cfg


def run_eval(args) -> dict:
    """The eval command: load the target, the pool and the data, then run_study."""
    cfg = config_from_args(args)
    if args.limit is not None and args.limit < 1:
        raise StudyError(f"--limit must be >= 1 (got {args.limit})")
    domains = _csv(args.domains)
    if not domains:
        raise StudyError("--domains is empty; e.g. --domains math,humaneval,medqa")
    import torch

    from specsel.modeling.target import load_target
    if args.threads:
        torch.set_num_threads(args.threads)
    names = _csv(args.drafters) if args.drafters else None
    if args.pool is None and names is not None:    # a cheap check before the model loads
        known = known_pool_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise StudyError(f"unknown drafter(s) {', '.join(unknown)}; the default pool has: {', '.join(known)}")
    target, tokenizer = load_target(args.target, dtype=args.dtype, device=args.device)
    items = load_items(tokenizer, domains, args.data_dir, args.limit, args.seed)
    pool = load_pool(target, names, args.pool)
    return run_study(target, pool, items, cfg, args.out, resume=args.resume, eos_token_id=tokenizer.eos_token_id,
                     progress=not args.no_progress, weights=pool_weights(list(pool), args.pool))


def pool_weights(names: Sequence[str], pool_path: str | None) -> str:
    """What identifies the pool's weights: the shipped files' hash, or the --pool file's."""
    import hashlib
    if pool_path is None:
        from drafters.pool import weights_fingerprint
        return weights_fingerprint(names)
    return "pool-file:" + hashlib.sha256(Path(pool_path).expanduser().read_bytes()).hexdigest()[:16]


def main(argv=None, prog: str = "domain_eval") -> int:
    ap = argparse.ArgumentParser(prog=prog, description="Every selection rule on one mixed stream of domain prompts.")
    add_eval_arguments(ap)
    args = ap.parse_args(argv)
    return eval_command(args, prog)


def eval_command(args, prog: str = "specsel eval") -> int:
    try:
        run_eval(args)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; every finished batch is saved in {args.out}/queries.jsonl: "
              f"rerun the same command with --resume to continue", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:   # StudyError, DataError, TargetError, DrafterError: one line
        print(f"{prog}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    return 0

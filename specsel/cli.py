"""The `specsel` command line.

    specsel generate --prompt "Write a Python function that reverses a list." --drafter ngram --gamma 4
    specsel eval --data-dir ../shared/data --domains math,humaneval,medqa --limit 3 --out results/
    specsel drafters
    specsel replay --records results/queries.jsonl --gammas 1,2,4
    specsel router collect --data-dir ../shared/data --split train --limit 60 --out runs/router_train
    specsel router fit --records runs/router_train/queries.jsonl --out router/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _check_pool_file(pool: str | None) -> None:
    """--pool names a file (checked before the model loads: building the pool needs the target)."""
    if pool is not None and not Path(pool).expanduser().is_file():
        raise ValueError(f"--pool {pool}: no such file; pass the path of a Python file defining build_pool(target)")


def _generate(args) -> int:
    from specsel.options import unused_sampling

    _check_pool_file(args.pool)                 # the numbers were checked in main (specsel.options)
    notice = unused_sampling(args)
    if notice:
        print(f"specsel generate: warning: {notice}", file=sys.stderr)
    import torch

    from evaluators.metrics import summarize
    from specsel import Arm, Sampling, SpecEngine
    from specsel.data import Query, encode_prompts
    from specsel.modeling.target import load_target
    from specsel.study import load_pool

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.pool is None and args.drafter not in (None, "none"):   # fail before the model loads
        from specsel.study import known_pool_names
        if args.drafter not in known_pool_names():
            raise ValueError(f"unknown drafter '{args.drafter}'; the default pool has: "
                             f"{', '.join(known_pool_names())}, or none")
    model, tokenizer = load_target(args.target, dtype=args.dtype, device=args.device, device_map=args.device_map)
    prompt = encode_prompts(tokenizer, [Query("user", "cli", [{"role": "user", "content": args.prompt}], "")])[0]
    pool = {} if args.drafter in (None, "none") else load_pool(model, [args.drafter], args.pool)
    engine = SpecEngine(model, pool, eos_token_id=tokenizer.eos_token_id)
    arm = Arm.autoregressive() if args.drafter in (None, "none") else Arm(args.drafter, args.gamma)
    sampling = None if args.temperature == 0 else Sampling(args.temperature, args.top_p, args.top_k, args.min_p)
    runs = {"autoregressive": Arm.autoregressive(), str(arm): arm} if args.compare else {str(arm): arm}
    results = {name: engine.generate([prompt], a, max_new_tokens=args.max_new_tokens, sampling=sampling,
                                     seed=args.seed, progress=True) for name, a in runs.items()}
    result = results[str(arm)]
    print(tokenizer.decode(result.tokens[0], skip_special_tokens=True))
    print(f"\n{'round':>5} {'arm':>10} {'drafted':>8} {'accepted':>9} {'committed':>10} {'draft ms':>9} "
          f"{'verify ms':>10}")
    for r in result.records:
        print(f"{r.round:>5} {str(Arm(r.drafter, r.gamma)):>10} {r.drafted:>8} {r.accepted:>9} {r.committed:>10} "
              f"{r.draft_s * 1e3:>9.1f} {r.verify_s * 1e3:>10.1f}")
    for name, res in results.items():
        s = summarize(res.records, res.wall_s, res.new_tokens)
        per_pos = ", ".join(f"{x:.2f}" for x in s["acceptance_per_pos"]) or "-"
        print(f"\n{name}: {res.new_tokens} tokens in {s['rounds']} target forwards, "
              f"mean_acceptance_length {s['mean_acceptance_length']:.2f}, "
              f"tokens_per_s {s['tokens_per_s']:.1f}, acceptance_per_pos [{per_pos}]")
    if args.compare:
        ar, sp = results["autoregressive"], result
        same = "identical" if ar.tokens == sp.tokens else "DIFFERENT"
        print(f"speedup over autoregressive: {(sp.new_tokens / sp.wall_s) / (ar.new_tokens / ar.wall_s):.2f}x "
              f"(outputs {same})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from specsel.modeling.device_map import DEVICE_MAP_HELP
    from specsel.modeling.target import EMBEDDED_DEFAULT
    from specsel.options import OneLineParser

    parser = OneLineParser(prog="specsel", description="Speculative decoding that picks its own drafter.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate for one prompt and print per-round stats")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--target", default=EMBEDDED_DEFAULT, help="local dir, hub id, or the embedded default")
    gen.add_argument("--drafter", default="ngram", help="drafter name, or 'none' for plain autoregressive")
    gen.add_argument("--gamma", type=int, default=4, help="speculation length (draft tokens per round)")
    gen.add_argument("--max-new-tokens", type=int, default=96)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    gen.add_argument("--top-p", type=float, default=1.0, help="sampling: nucleus mass kept (1 = off)")
    gen.add_argument("--top-k", type=int, default=0, help="sampling: most likely tokens kept (0 = off; Hugging "
                     "Face's generate applies 50 unless the model's generation_config says otherwise)")
    gen.add_argument("--min-p", type=float, default=0.0, help="sampling: drop tokens below min-p x the top "
                     "probability (0 = off)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: by device)")
    gen.add_argument("--device", default=None, help="cpu or cuda (default: cuda when visible)")
    gen.add_argument("--device-map", default=None, help=DEVICE_MAP_HELP)
    gen.add_argument("--threads", type=int, default=None)
    gen.add_argument("--compare", action="store_true",
                     help="also run plain autoregressive decoding and report the speedup")
    gen.add_argument("--pool", default=None, help="Python file defining build_pool(target) (default: drafters.pool)")
    gen.set_defaults(func=_generate)

    from specsel.study import add_eval_arguments
    ev = sub.add_parser("eval", help="the domain study: every selection rule on one mixed stream "
                        "(= recipes/domain_eval.py)")
    add_eval_arguments(ev)
    ev.set_defaults(func=_eval)

    dr = sub.add_parser("drafters", help="list the drafter pool")
    dr.add_argument("--pool", default=None, help="Python file defining build_pool(target): build it and list it")
    dr.add_argument("--target", default=EMBEDDED_DEFAULT, help="target to build --pool for")
    dr.set_defaults(func=_drafters)

    rp = sub.add_parser("replay", help="re-run learners offline on stored full-information records")
    rp.add_argument("--records", required=True, help="queries.jsonl of `specsel eval`, or a round-records JSONL")
    rp.add_argument("--run", default=None, help="which full-information run of the file (default: the first)")
    rp.add_argument("--bsz", type=int, default=None, help="which batch size of the file (default: the first)")
    rp.add_argument("--drafters", default=None, help="comma list (default: every drafter in the records)")
    rp.add_argument("--gammas", default=None, help="comma list (default: the gammas played in the records)")
    rp.add_argument("--learners", default=None, help="comma list (default: all)")
    rp.add_argument("--seed", type=int, default=None, help="learner seed (default: the study's, else 0)")
    rp.add_argument("--score-every", type=int, default=None,
                    help="full-information learners hear of their rounds this many at a time, as under deferred "
                         "scoring (default: the study's --score-every for greedy records, else 1)")
    rp.set_defaults(func=_replay)

    ro = sub.add_parser("router", help="a prompt router: collect full-information records, fit a router on them")
    rsub = ro.add_subparsers(dest="router_command", required=True)
    co = rsub.add_parser("collect", help="decode only a study's full-information run (the records a router is "
                         "fitted on); the eval flags, e.g. --split train")
    add_eval_arguments(co)
    co.set_defaults(func=_router_collect)
    fit = rsub.add_parser("fit", help="fit a router (scikit-learn, saved without pickle) on full-information records")
    fit.add_argument("--records", action="append", required=True,
                     help="queries.jsonl of `specsel router collect` or `specsel eval` (repeatable)")
    fit.add_argument("--out", required=True, help="folder for router.json and router.safetensors")
    fit.add_argument("--data-dir", default=None, help="where the queries' texts are (default: the study's)")
    fit.add_argument("--bsz", type=int, default=None, help="which batch size's run (default: the study's first)")
    fit.add_argument("--folds", type=int, default=5, help="cross-validation folds for the reported accuracy")
    fit.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(func=_router_fit)
    return parser


def _router_collect(args) -> int:
    from specsel.study import eval_command
    return eval_command(args, "specsel router collect", fullinfo_only=True)


def _router_fit(args) -> int:
    from specsel.study.router_fit import fit_router

    fit_router(args.records, args.out, args.data_dir, args.bsz, args.folds, args.C, args.seed,
               command="specsel " + " ".join(sys.argv[1:]))
    return 0


def _eval(args) -> int:
    from specsel.study import eval_command
    return eval_command(args, "specsel eval")


def _drafters(args) -> int:
    from drafters import registered
    from drafters.pool import pool_names

    if args.pool is None:
        from specsel.study import known_pool_names
        default = pool_names()
        print("default pool (drafters.pool; build with default_pool(target, names)):")
        for name in known_pool_names():
            print(f"  {name}" + ("" if name in default else "   (optional: pass it in --drafters)"))
        print("drafter families (drafters.build): " + ", ".join(registered()))
        return 0
    from specsel.modeling.target import load_target
    from specsel.study import load_pool

    _check_pool_file(args.pool)
    model, _ = load_target(args.target)
    pool = load_pool(model, None, args.pool)
    print(f"pool from {args.pool} for {args.target}:")
    for name, d in pool.items():
        print(f"  {name:<24} {type(d).__name__}")
    return 0


def _replay_gammas(args) -> list[int] | None:
    """`specsel replay --gammas` parsed (its values are checked with every option, in main)."""
    from specsel.options import parse_ints
    return parse_ints(args.gammas, "--gammas") if args.gammas else None


def _replay_source(path: Path, args) -> tuple[str, int | None, list[dict], dict | None]:
    """(run, bsz, query lines, the study's replay_exact or None) of the full-information run to replay:
    the study's query lines (queries.jsonl), or per-round records made into one line per query."""
    from evaluators.lines import complete_lines
    from evaluators.records import (
        QUERY_LINE_FIELDS,
        RECORD_FIELDS,
        by_query,
        check_fields,
        fully_scored,
        read_records,
        replay_exact_of,
    )
    from specsel.study.store import read_config

    if path.is_dir():
        raise ValueError(f"--records {path} is a folder; pass the queries.jsonl in it (written by `specsel eval`)")
    if not path.is_file():
        raise ValueError(f"--records {path}: no such file; pass the queries.jsonl written by `specsel eval`")
    lines = read_records(path)
    if not lines:
        raise ValueError(f"--records {path}: the file holds no records; pass the queries.jsonl written by "
                         "`specsel eval` (or round records written by append_records)")
    fix = "record with feedback='full' (specsel eval stores a full-information run in queries.jsonl)"
    if "records" in lines[0]:                      # query lines of `specsel eval`
        check_fields(lines, QUERY_LINE_FIELDS, path, "query line")
        by_run: dict[tuple, list[dict]] = {}
        for line in complete_lines(lines):
            by_run.setdefault((line["run"], line["bsz"]), []).append(line)
        # a full-information run: every round of every query has every drafter's acceptance
        runs = [r for r, ls in by_run.items() if all(fully_scored(l["records"]) for l in ls)]
        runs = [r for r in runs if (args.run is None or r[0] == args.run) and (args.bsz is None or r[1] == args.bsz)]
        if not runs:
            raise ValueError(f"--records {path}: no full-information run" + (f" named {args.run}" if args.run else "")
                             + (f" at bsz {args.bsz}" if args.bsz else "") + f"; {fix}")
        config = read_config(path.parent)          # the study's: its replay_exact rules, as in the study's report
        return *runs[0], by_run[runs[0]], (config or {}).get("replay_exact")
    check_fields(lines, RECORD_FIELDS, path)        # per-round records (evaluators.records)
    if any("query" not in r and "row" not in r for r in lines):
        raise ValueError(f"--records {path}: round records without a 'query' (or 'row') id; "
                         "write them with append_records(path, records, query=...)")
    out = []
    for i, (q, recs) in enumerate(by_query(lines).items()):
        if any(r.get("position_acceptance") is None for r in recs):
            raise ValueError(f"--records {path}: query {q} has rounds without counterfactual acceptance; {fix}")
        out.append({"qid": str(q), "index": i, "records": recs, "tokens": [0] * sum(r["committed"] for r in recs),
                    "replay_exact": replay_exact_of(recs, list(recs[0]["position_acceptance"]))})
    return path.name, None, out, None


def _verdict(row: dict) -> str:
    """What a replayed row is: exact, estimated (drafters that do not replay exactly) or one draw (sampling)."""
    if row.get("exact"):
        return "exact"
    return "Monte-Carlo" if "Monte-Carlo" in (row.get("regret_unit") or "") else "estimated"


def _with_verdicts(table: str, rows: list[dict]) -> str:
    """The table with a `replay` column saying, row by row, whether the row is exact or an estimate."""
    lines = table.split("\n")            # header, rule, one line per row
    width = max(len(line) for line in lines)
    cells = ["replay"] + [_verdict(r) for r in rows]
    rule = "-" * (width + 2 + max(len(c) for c in cells))
    return "\n".join([lines[0].ljust(width) + "  replay", rule]
                     + [line.ljust(width) + "  " + cell for line, cell in zip(lines[2:], cells[1:])])


def _replay(args) -> int:
    from evaluators.fullinfo import FullInfo
    from evaluators.report import format_table
    from specsel.core.arms import arm_name
    from specsel.core.runs import STUDY_LEARNERS
    from specsel.study import parse_csv
    from specsel.study.offline import replay_rows, study_score_every
    from specsel.study.store import read_config

    gammas = _replay_gammas(args)
    path = Path(args.records)
    run, bsz, lines, told = _replay_source(path, args)
    seen = lines[0]["records"][0]["position_acceptance"] if lines[0]["records"] else None
    if not isinstance(seen, dict) or not seen:
        raise ValueError(f"--records {path}: the first query's first round has no per-drafter acceptance; "
                         "record with feedback='full'")
    drafters = parse_csv(args.drafters) if args.drafters else list(seen)
    unknown = [d for d in drafters if d not in seen]
    if unknown:
        raise ValueError(f"--drafters: no acceptance recorded for {', '.join(unknown)}; recorded: {', '.join(seen)}")
    gammas = gammas or sorted({r["gamma"] for l in lines for r in l["records"] if r["gamma"] > 0}) or [4]
    learners = parse_csv(args.learners) if args.learners else list(STUDY_LEARNERS)
    bad = [l for l in learners if l not in STUDY_LEARNERS]
    if bad:
        raise ValueError(f"unknown learner(s) {', '.join(bad)}; choose from {', '.join(STUDY_LEARNERS)}")
    config = read_config(path.parent)              # the study's, if the records are a study's queries.jsonl
    seed = args.seed if args.seed is not None else _study_seed(config)
    every = args.score_every if args.score_every is not None else study_score_every(config)
    fi = FullInfo(lines, drafters, seed, told)     # told (config.json) decides, as in the study's report
    arms = [arm_name(d, g) for d in drafters for g in gammas]
    rows = replay_rows(fi, arms, learners, seed, bsz=bsz, score_every=every)
    print(f"replay of {run}" + (f" (bsz {bsz})" if bsz else "") + f": {len(fi.qids)} queries, {len(arms)} arms "
          f"({', '.join(arms)}), length objective" + (f", full information heard {every} rounds at a time"
                                                       if every > 1 and fi.greedy else ""))
    print(_with_verdicts(format_table(rows), rows))
    inexact = [d for d in drafters if not fi.replay_exact[d]]
    if not fi.greedy:
        how = "one Monte-Carlo draw (sampling records)."
    elif not fi.exact_for(arms):
        how = (f"estimated: replays of {', '.join(inexact)} are not exact (a drafter whose live draft chain may "
               "differ from its teacher-forced predictions, e.g. an EAGLE head or a LoRA expert, or records that "
               "do not say it replays exactly).")
    else:
        how = "exact replay (greedy records)."
    print("* regret: mean per query of (rounds - per-query oracle rounds); " + how)
    return 0


def _study_seed(config: dict | None) -> int:
    """The seed of a study (its config.json, read by store.read_config), else 0."""
    seed = (config or {}).get("seed", 0)
    return seed if isinstance(seed, int) and seed >= 0 else 0


def _command(args) -> str:
    """The command as typed: "specsel generate", "specsel router fit"."""
    return " ".join(["specsel", args.command] + ([args.router_command] if args.command == "router" else []))


def main(argv=None) -> int:
    from specsel.options import check_args

    args = build_parser().parse_args(argv)
    try:
        check_args(args)                     # every number and choice, one place for all commands
        return args.func(args)
    except KeyboardInterrupt:                # Ctrl-C: one line, the shell's status for SIGINT
        print(f"\n{_command(args)}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:     # our errors are one line that names the fix
        text = str(exc).strip()
        print(f"{_command(args)}: error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

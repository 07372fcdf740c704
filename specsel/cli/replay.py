"""`specsel replay`: re-run learners offline on stored full-information records.

    specsel replay --records results/queries.jsonl --gammas 1,2,4

The records are a study's queries.jsonl (its full-information run) or round records written by
`evaluators.records.append_records`; every learner is replayed per query with the run's own
feedback delay (`specsel.replay.learners`), and each row says whether it is exact or an estimate.
"""
from __future__ import annotations

from pathlib import Path

from evaluators.lines import complete_lines
from evaluators.records import QUERY_LINE_FIELDS, RECORD_FIELDS, by_query, check_fields, read_config, read_records
from evaluators.report import format_table
from specsel.core.arms import arm_name
from specsel.core.runs import STUDY_LEARNERS
from specsel.flags import one_int
from specsel.options import parse_csv, parse_ints
from specsel.replay.fullinfo import FullInfo, fully_scored, replay_exact_of
from specsel.replay.learners import replay_rows, study_score_every


def _replay_gammas(args) -> list[int] | None:
    """`specsel replay --gammas` parsed (its values are checked with every option, in main)."""
    return parse_ints(args.gammas, "--gammas") if args.gammas else None


def _replay_source(path: Path, args) -> tuple[str, int | None, list[dict], dict | None]:
    """(run, bsz, query lines, the study's replay_exact or None) of the full-information run to replay:
    the study's query lines (queries.jsonl), or per-round records made into one line per query."""
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
        bsz = one_int(args, "bsz")
        runs = [r for r in runs if (args.run is None or r[0] == args.run) and (bsz is None or r[1] == bsz)]
        if not runs:
            raise ValueError(f"--records {path}: no full-information run" + (f" named {args.run}" if args.run else "")
                             + (f" at bsz {bsz}" if bsz else "") + f"; {fix}")
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


def replay_command(args) -> int:

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

"""Study summaries from stored query lines: rows, best fixed arms, acceptance targets (records in, never models).

A *study* (``specsel.study``, ``recipes/domain_eval.py``) decodes one stream of queries with
several *runs* (the autoregressive baseline, fixed arms, learners; names from
``specsel.core.runs.run_name``) at one or more batch sizes and appends one JSON *query line*
per finished query (``evaluators.lines``).

One run per batch size decodes with full-information feedback (``config["fullinfo_run"]``):
every fixed arm's cost on every query and the per-query oracle follow from it
(``specsel.replay.fullinfo``), exactly for greedy decoding and replay-exact drafters
(``config["replay_exact"]``; rows built on the others are marked estimated).

Settings (``config["settings"]``, ``specsel.core.runs.SETTINGS``):

* ``drafter``: arms = the drafters at one gamma; objective = accepted length. The cost of a
  query is its number of target rounds; the oracle and the best fixed arm are exact (see above).
* ``joint``: arms = drafters x gammas; objective = tokens per second. A round of arm
  ``(j, g)`` costs ``t_verify(g) + g * t_draft(j)``, in units of one autoregressive forward,
  with the step times fitted on the full-information run's own round timings
  (``specsel.core.costs.StepCost``). The per-query oracle, regret and % of oracle of this setting
  therefore rest on that cost model: they are estimates and labelled as such. Tokens/s columns
  are always measured live (the oracle has none).

Stopping-time regret (BanditSpec) of a run on a query = its cost minus the cost of the
per-query oracle arm (the fixed arm that is best on that very query), averaged over queries.
Fixed arms therefore have regret >= 0; an adaptive learner may go below 0 by switching arms.
``pct_oracle`` = 100 * sum(oracle cost) / sum(run cost).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from evaluators.columns import new_row
from evaluators.lines import complete_lines, index_runs
from evaluators.lossless import check_lossless
from evaluators.reliability import judge, machine_summary
from evaluators.timing import batch_times, paired_ratios, ratio_summary
from specsel.core.arms import arm_name
from specsel.core.costs import run_cost, setting_cost
from specsel.core.runs import JOINT_BASELINES, repeat_run, run_name
from specsel.replay.fullinfo import FullInfo, SettingEval

TARGETS = {  # acceptance targets of HedgeSpec on the mixed stream: ratio to the best fixed arm / the oracle
    ("drafter", "hedgespec_mat_over_best_fixed"): 1.05,
    ("drafter", "hedgespec_mat_over_oracle"): 0.95,
    ("joint", "hedgespec_tps_over_best_fixed"): 1.0,
    # with a prompt router (specsel eval --router): routing, and HedgeSpec started from the router's prior
    ("drafter", "router_mat_over_best_fixed"): 1.05,
    ("drafter", "router_hedgespec_mat_over_hedgespec"): 1.03,
    ("drafter", "router_hedgespec_mat_over_oracle"): 1.0,
}


def pick_best_fixed(setting: str, ev: SettingEval, live: dict[str, list[dict]], bsz: int,
                    times: dict | None = None, repeats: int = 1) -> tuple[str | None, str | None]:
    """The best fixed arm over the stream and, when timings could not be used, why. With an exact
    ranking, its first arm; otherwise the live candidate with the best measured objective: fewest
    rounds (`drafter`) or most tokens/s, compared batch by batch (`joint`). A tokens/s comparison
    that rests on an unreliable timing (evaluators.reliability) is not made: the best candidate by
    the full-information estimate is taken, and the reason returned."""
    if ev.exact and ev.ranking:
        return ev.ranking[0], None
    ran = [a for a in ev.ranking if live.get(a)]
    if not ran:
        return None, None
    if setting == "drafter":
        return min(ran, key=lambda a: sum(len(l["records"]) for l in live[a])), None
    if len(ran) == 1:
        return ran[0], None
    times = times if times is not None else batch_times(l for lines in live.values() for l in lines)
    names = {a: run_name("fixed", arm=a) for a in ran}
    pairs = {a: paired_ratios(times, names[a], names[ran[0]], bsz, repeats) for a in ran}
    reason = judge(times, [k for ps in pairs.values() for p in ps for k in p.keys],
                   [p for a in ran[1:] for p in pairs[a]])
    if reason is not None:
        return ran[0], reason
    # each candidate against the first by estimate, batch by batch: the median of its ratios
    score = {a: (ratio_summary(pairs[a]) or {"median": 0.0})["median"] for a in ran}
    return max(ran, key=lambda a: score[a]), None


def _timing(lines: Sequence[dict], whole_stream: bool, bsz: int) -> tuple[int, float, float] | None:
    """(new tokens, wall seconds, prefill seconds) of these queries' batches, or None when a
    batch's wall time would have to be split between its queries (a subset at batch size > 1)."""
    if not lines or not (whole_stream or bsz == 1):
        return None
    batches = {l["batch"]: (l["batch_new_tokens"], l["batch_wall_s"], l.get("batch_prefill_s", 0.0)) for l in lines}
    return tuple(sum(b[k] for b in batches.values()) for k in range(3))


def _live_row(key: tuple, lines: Sequence[dict], whole_stream: bool, ev: SettingEval | None, lossless: bool | None,
              arm: str = "") -> dict | None:
    """A run's row from its lines (its first repeat): MAT, rounds, regret against the oracle; the
    speed columns come from `_speed`. `key`: (setting, domain, bsz, learner)."""
    setting, domain, bsz, learner = key
    if not lines:
        return None
    records = [r for l in lines for r in l["records"]]
    rounds = len(records)
    committed = sum(r["committed"] for r in records)
    timing = _timing(lines, whole_stream, bsz)
    decode_tps = timing[0] / (timing[1] - timing[2]) if timing and timing[1] > timing[2] else None
    if not arm and records:            # a learner: the arm it played most, with its share of rounds
        top, n = Counter(arm_name(r["drafter"], r["gamma"]) for r in records).most_common(1)[0]
        arm = f"mostly {top} ({100 * n / rounds:.0f}%)"
    row = new_row(setting, domain, bsz, learner, arm=arm, lossless=lossless, queries=len(lines),
                  new_tokens=sum(len(l["tokens"]) for l in lines), rounds=rounds,
                  wall_s=timing[1] if timing else None, prefill_s=timing[2] if timing else None,
                  decode_tokens_per_s=decode_tps, mat=committed / rounds if rounds else None)
    if ev is not None:
        pairs = [(run_cost(l, ev.cost), ev.oracle_cost[l["qid"]]) for l in lines if l["qid"] in ev.oracle_cost]
        if pairs:
            cost, oracle = map(np.array, zip(*pairs))
            row.update(regret=float((cost - oracle).mean()),
                       pct_oracle=100.0 * oracle.sum() / cost.sum() if cost.sum() > 0 else None,
                       regret_unit=ev.cost.unit + ("" if ev.exact else " (estimated)"), exact=ev.exact)
    return row


def _speed(row: dict, times: dict, run: str, bsz: int, repeats: int, batches: set[int]) -> None:
    """The speed columns of a timed row over `batches`: tokens/s (the median over repeats), the
    speedup over the autoregressive baseline (the median of per-batch ratios, each taken between the
    two runs on one batch in one repeat, evaluators.timing) with its min, max and count, and
    `unreliable`: why these figures cannot be trusted (evaluators.reliability), or None."""
    per_repeat = []
    for k in range(repeats):
        ts = [times[key] for key in ((repeat_run(run, k), bsz, b) for b in batches) if key in times]
        wall = sum(t.wall_s for t in ts)
        if ts and wall > 0:
            per_repeat.append(sum(t.tokens for t in ts) / wall)
    pairs = [p for p in paired_ratios(times, run, "autoregressive", bsz, repeats) if p.batch in batches]
    summary = ratio_summary(pairs)
    if not per_repeat or summary is None:
        return
    keys = [key for p in pairs for key in p.keys]
    row.update(tokens_per_s=float(np.median(per_repeat)), speedup=summary["median"], speedup_min=summary["min"],
               speedup_max=summary["max"], speedup_n=summary["n"], repeats=len(per_repeat),
               unreliable=judge(times, keys, pairs))


def _oracle_row(setting, domain, bsz, ev: SettingEval, qids: Sequence[str], lossless: bool | None) -> dict | None:
    qs = [q for q in qids if q in ev.oracle_cost]
    if not qs:
        return None
    tokens = sum(ev.fi.tokens[q] for q in qs)
    rounds = sum(ev.oracle_rounds[q] for q in qs)
    arms = Counter(ev.oracle_arm[q] for q in qs)
    label = ("per-query (" + ", ".join(f"{a} x{n}" for a, n in arms.most_common(3))
             + (", ..." if len(arms) > 3 else "") + ")")
    return new_row(setting, domain, bsz, "oracle", mat=tokens / rounds if rounds else None, tokens_per_s=None,
                   speedup=None, regret=0.0, pct_oracle=100.0, arm=label, lossless=lossless, queries=len(qs),
                   new_tokens=tokens, rounds=int(rounds), exact=ev.exact,
                   regret_unit=ev.cost.unit + ("" if ev.exact else " (estimated)"))


@dataclass
class _Stream:
    """What every row of a study summary reads: its lines by run, their batch times, its config."""
    runs: dict
    times: dict
    config: dict
    lossless: dict
    repeats: int

    def ll(self, run: str, bsz: int) -> bool | None:
        return self.lossless["by_run"].get((run, bsz)) if self.lossless["lossless"] is not None else None

    def lines(self, run: str, bsz: int, qids: Sequence[str]) -> list[dict]:
        by_qid = self.runs.get((run, bsz), {})
        return [by_qid[q] for q in qids if q in by_qid]


def summarize_study(lines: Iterable[dict], config: dict) -> dict:
    """Summary rows (one per setting x domain x bsz x learner), lossless check, best fixed arms,
    the targets, the cost models used and how much of the machine the timed batches had.

    `config` holds: settings {name: {"arms": [...]}}, learners, bsz, queries [{qid, domain,
    index}], fullinfo_run, fixed_candidates, drafters, seed, temperature, repeats and replay_exact
    ({drafter: bool}; without it the full-information lines' own field decides, and a drafter
    neither names is not replay-exact: evaluators.records.replay_exact_of).
    """
    lines = complete_lines(lines)
    runs = index_runs(lines)
    bszs = [int(b) for b in config["bsz"]]
    greedy = float(config.get("temperature", 0.0)) == 0.0
    lossless = check_lossless(runs, bszs) if greedy else {"lossless": None, "checked": 0, "by_run": {},
                                                          "mismatches": []}
    st = _Stream(runs, batch_times(lines), config, lossless, int(config.get("repeats", 1)))
    queries = sorted(config["queries"], key=lambda q: q["index"])
    domains = list(dict.fromkeys(q["domain"] for q in queries))
    stream = "mixed" if len(domains) > 1 else (domains[0] if domains else "mixed")
    groups = [(stream, [q["qid"] for q in queries], True)]
    if len(domains) > 1:
        groups += [(d, [q["qid"] for q in queries if q["domain"] == d], False) for d in domains]
    out = {"rows": [], "best_fixed": {}, "fixed_candidates": {}, "cost_models": {}, "targets": []}
    for bsz in bszs:
        fi_lines = runs.get((config["fullinfo_run"], bsz), {})
        fi = FullInfo(fi_lines.values(), config["drafters"], config.get("seed", 0),
                      config.get("replay_exact")) if fi_lines else None
        for setting, spec in config["settings"].items():
            ev = None
            if fi is not None:
                cost = setting_cost(setting, list(fi_lines.values()))
                ev = SettingEval(fi, spec["arms"], cost)
                out["cost_models"][f"{setting}/bsz{bsz}"] = cost.to_dict()
            best = _best_fixed(st, out, setting, ev, bsz)
            for domain, qids, whole in groups:
                out["rows"] += _group_rows(st, setting, domain, qids, whole, bsz, ev, best)
            out["targets"] += _targets(out["rows"], setting, stream, bsz, st, best)
    out["lossless"] = {"lossless": lossless["lossless"], "checked": lossless["checked"],
                       "mismatches": lossless["mismatches"][:20]}
    out["machine"] = machine_summary(st.times)
    return out


def _best_fixed(st: _Stream, out: dict, setting: str, ev: SettingEval | None, bsz: int) -> str | None:
    """The setting's best fixed arm (pick_best_fixed), recorded with its live candidates in `out`."""
    if ev is None:
        return None
    cands = ev.live_candidates(st.config.get("fixed_candidates", 2))
    live = {a: list(st.runs.get((run_name("fixed", arm=a), bsz), {}).values()) for a in cands}
    key = f"{setting}/bsz{bsz}"
    out["fixed_candidates"][key] = {
        a: {"estimated_cost": float(ev.total[ev.arms.index(a)]),
            "rounds": sum(len(l["records"]) for l in live[a]) if live[a] else None,
            "tokens_per_s": _stream_tokens_per_s(st, run_name("fixed", arm=a), bsz)} for a in cands}
    best, why = pick_best_fixed(setting, ev, live, bsz, st.times, st.repeats)
    out["best_fixed"][key] = {"arm": best, "exact": ev.exact, **({"chosen_by_estimate": why} if why else {})}
    return best


def _stream_tokens_per_s(st: _Stream, run: str, bsz: int) -> float | None:
    row: dict = {}
    _speed(row, st.times, run, bsz, st.repeats, {b for (r, z, b) in st.times if r == run and z == bsz})
    return row.get("tokens_per_s")


def _group_rows(st: _Stream, setting: str, domain: str, qids: Sequence[str], whole: bool, bsz: int,
                ev: SettingEval | None, best: str | None) -> list[dict]:
    """The rows of one stream or domain: the baseline, the best fixed arm, the oracle, every learner."""
    timed = [("autoregressive", "autoregressive", "autoregressive")]
    if best is not None:
        timed.append(("best_fixed", run_name("fixed", arm=best), best))
    extra = [b for b in JOINT_BASELINES if setting == "joint"]
    timed += [(learner, run_name("learner", setting, learner), "") for learner in [*st.config["learners"], *extra]]
    rows = []
    for learner, run, arm in timed:
        lines = st.lines(run, bsz, qids)
        row = _live_row((setting, domain, bsz, learner), lines, whole, ev, st.ll(run, bsz), arm)
        if row is None:
            continue
        if whole or bsz == 1:        # a batch's wall time cannot be split between domains
            _speed(row, st.times, run, bsz, st.repeats, {l["batch"] for l in lines})
        rows.append(row)
    oracle = _oracle_row(setting, domain, bsz, ev, qids, st.ll(st.config["fullinfo_run"], bsz)) if ev else None
    if oracle is not None:              # after the baseline and the best fixed arm, as the tables list them
        rows.insert(sum(r["learner"] in ("autoregressive", "best_fixed") for r in rows), oracle)
    return rows


def _targets(rows: Sequence[dict], setting: str, stream: str, bsz: int, st: _Stream, best: str | None) -> list[dict]:
    """The targets of `setting` on the whole stream. A speed target is a ratio of per-batch ratios
    (evaluators.timing); when the timings it rests on are unreliable it is not judged (met=None)."""
    get = {r["learner"]: r for r in rows if r["setting"] == setting and r["domain"] == stream and r["bsz"] == bsz}
    hedge, best_row, oracle = get.get("hedgespec"), get.get("best_fixed"), get.get("oracle")
    out = []

    def add(name, num, den, unreliable=None):
        if num is not None and den:
            ratio = num / den
            need = TARGETS[setting, name]
            out.append({"setting": setting, "bsz": bsz, "target": name, "ratio": ratio, "required": need,
                        "met": None if unreliable else bool(ratio >= need),
                        **({"not_judged": f"timing unreliable: {unreliable}"} if unreliable else {})})
    routed, routed_hedge = get.get("router"), get.get("router_hedgespec")
    if setting == "drafter" and routed is not None:
        add("router_mat_over_best_fixed", routed["mat"], best_row and best_row["mat"])
    if setting == "drafter" and routed_hedge is not None:
        add("router_hedgespec_mat_over_hedgespec", routed_hedge["mat"], hedge and hedge["mat"])
        add("router_hedgespec_mat_over_oracle", routed_hedge["mat"], oracle and oracle["mat"])
    if hedge is None:
        return out
    if setting == "drafter":
        add("hedgespec_mat_over_best_fixed", hedge["mat"], best_row and best_row["mat"])
        add("hedgespec_mat_over_oracle", hedge["mat"], oracle and oracle["mat"])
    elif setting == "joint" and best is not None:
        run, ref = run_name("learner", "joint", "hedgespec"), run_name("fixed", arm=best)
        pairs = paired_ratios(st.times, run, ref, bsz, st.repeats)
        summary = ratio_summary(pairs)
        if summary is not None:
            reason = judge(st.times, [k for p in pairs for k in p.keys], pairs)
            add("hedgespec_tps_over_best_fixed", summary["median"], 1.0, reason)
    return out

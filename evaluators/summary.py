"""Study summaries from stored query lines: rows, best fixed arms, acceptance targets (records in, never models).

A *study* (``specsel.study``, ``recipes/domain_eval.py``) decodes one stream of queries with
several *runs* (the autoregressive baseline, fixed arms, learners; names from
``specsel.core.runs.run_name``) at one or more batch sizes and appends one JSON *query line*
per finished query (``evaluators.lines``).

One run per batch size decodes with full-information feedback (``config["fullinfo_run"]``):
every fixed arm's cost on every query and the per-query oracle follow from it
(``evaluators.fullinfo``), exactly for greedy decoding and replay-exact drafters
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
from typing import Iterable, Sequence

import numpy as np

from evaluators.columns import new_row
from evaluators.fullinfo import FullInfo, SettingEval
from evaluators.lines import index_runs
from evaluators.lossless import check_lossless
from specsel.core.arms import arm_name
from specsel.core.costs import run_cost, setting_cost
from specsel.core.runs import JOINT_BASELINES, repeat_run, run_name

TARGETS = {  # acceptance targets of HedgeSpec on the mixed stream: ratio to the best fixed arm / the oracle
    ("drafter", "hedgespec_mat_over_best_fixed"): 1.05,
    ("drafter", "hedgespec_mat_over_oracle"): 0.95,
    ("joint", "hedgespec_tps_over_best_fixed"): 1.0,
    # with a prompt router (specsel eval --router): routing, and HedgeSpec started from the router's prior
    ("drafter", "router_mat_over_best_fixed"): 1.05,
    ("drafter", "router_hedgespec_mat_over_hedgespec"): 1.03,
    ("drafter", "router_hedgespec_mat_over_oracle"): 1.0,
}


def pick_best_fixed(setting: str, ev: SettingEval, live: dict[str, list[dict]], bsz: int) -> str | None:
    """The best fixed arm over the stream. With an exact ranking, its first arm; otherwise the
    live candidate with the best measured objective: fewest rounds (`drafter`) or most tokens/s."""
    if ev.exact and ev.ranking:
        return ev.ranking[0]
    score = {}
    for arm, lines in live.items():
        if lines:
            rounds = sum(len(l["records"]) for l in lines)
            score[arm] = (-rounds if setting == "drafter" else (_tokens_per_s(lines, True, bsz)[0] or 0.0))
    return max(score, key=score.get) if score else None


def _timing(lines: Sequence[dict], whole_stream: bool, bsz: int) -> tuple[int, float, float] | None:
    """(new tokens, wall seconds, prefill seconds) of these queries' batches, or None when a
    batch's wall time would have to be split between its queries (a subset at batch size > 1)."""
    if not lines or not (whole_stream or bsz == 1):
        return None
    batches = {l["batch"]: (l["batch_new_tokens"], l["batch_wall_s"], l.get("batch_prefill_s", 0.0)) for l in lines}
    return tuple(sum(b[k] for b in batches.values()) for k in range(3))


def _tokens_per_s(lines: Sequence[dict], whole_stream: bool, bsz: int) -> tuple[float | None, float | None]:
    """Measured tokens/s (prefill included, end to end) and wall seconds. A batch's wall time
    cannot be split between its queries, so a subset (one domain) has them only at batch size 1."""
    t = _timing(lines, whole_stream, bsz)
    if t is None:
        return None, None
    tokens, wall, _ = t
    return (tokens / wall if wall > 0 else None), wall


def _live_row(setting, domain, bsz, learner, lines: Sequence[dict], whole_stream: bool, ev: SettingEval | None,
              ar_tps: float | None, lossless: bool | None, arm: str = "") -> dict | None:
    if not lines:
        return None
    records = [r for l in lines for r in l["records"]]
    rounds = len(records)
    committed = sum(r["committed"] for r in records)
    tps, wall = _tokens_per_s(lines, whole_stream, bsz)
    timing = _timing(lines, whole_stream, bsz)
    prefill = timing[2] if timing else None
    decode_tps = timing[0] / (timing[1] - timing[2]) if timing and timing[1] > timing[2] else None
    if not arm and records:            # a learner: the arm it played most, with its share of rounds
        top, n = Counter(arm_name(r["drafter"], r["gamma"]) for r in records).most_common(1)[0]
        arm = f"mostly {top} ({100 * n / rounds:.0f}%)"
    row = new_row(setting, domain, bsz, learner, arm=arm, lossless=lossless, queries=len(lines),
                  new_tokens=sum(len(l["tokens"]) for l in lines), rounds=rounds, wall_s=wall, prefill_s=prefill,
                  decode_tokens_per_s=decode_tps,
                  mat=committed / rounds if rounds else None, tokens_per_s=tps,
                  speedup=tps / ar_tps if tps and ar_tps else None)
    if ev is not None:
        pairs = [(run_cost(l, ev.cost), ev.oracle_cost[l["qid"]]) for l in lines if l["qid"] in ev.oracle_cost]
        if pairs:
            cost, oracle = map(np.array, zip(*pairs))
            row.update(regret=float((cost - oracle).mean()),
                       pct_oracle=100.0 * oracle.sum() / cost.sum() if cost.sum() > 0 else None,
                       regret_unit=ev.cost.unit + ("" if ev.exact else " (estimated)"), exact=ev.exact)
    return row


def _repeat_timing(row: dict, repeats: Sequence[dict], ar_repeats: Sequence[dict], sel, whole: bool, bsz: int) -> None:
    """tokens/s and speedup of a timed row as the median over its interleaved repeats, the speedup
    of each repeat taken against the baseline of the same repeat; with the speedup's min and max."""
    tps, ratios = [], []
    for lines, ar in zip(repeats, ar_repeats):
        t, a = _tokens_per_s(sel(lines), whole, bsz)[0], _tokens_per_s(sel(ar), whole, bsz)[0]
        if t and a:
            tps.append(t)
            ratios.append(t / a)
    if ratios:
        row.update(tokens_per_s=float(np.median(tps)), speedup=float(np.median(ratios)), speedup_min=min(ratios),
                   speedup_max=max(ratios), repeats=len(ratios))


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


def summarize_study(lines: Iterable[dict], config: dict) -> dict:
    """Summary rows (one per setting x domain x bsz x learner), lossless check, best fixed arms,
    the acceptance-target ratios and the cost models used.

    `config` holds: settings {name: {"arms": [...]}}, learners, bsz, queries [{qid, domain,
    index}], fullinfo_run, fixed_candidates, drafters, seed, temperature and replay_exact
    ({drafter: bool}; without it the full-information lines' own field decides, and a drafter
    neither names is not replay-exact: evaluators.records.replay_exact_of).
    """
    runs = index_runs(lines)
    bszs = [int(b) for b in config["bsz"]]
    greedy = float(config.get("temperature", 0.0)) == 0.0
    lossless = check_lossless(runs, bszs) if greedy else {"lossless": None, "checked": 0, "by_run": {},
                                                          "mismatches": []}
    queries = sorted(config["queries"], key=lambda q: q["index"])
    domains = list(dict.fromkeys(q["domain"] for q in queries))
    stream = "mixed" if len(domains) > 1 else (domains[0] if domains else "mixed")
    groups = [(stream, [q["qid"] for q in queries], True)]
    if len(domains) > 1:
        groups += [(d, [q["qid"] for q in queries if q["domain"] == d], False) for d in domains]

    reps = range(int(config.get("repeats", 1)))

    def ll(run, bsz):
        return lossless["by_run"].get((run, bsz)) if greedy else None

    rows, best_fixed, candidates, costs, targets = [], {}, {}, {}, []
    for bsz in bszs:
        fi_lines = runs.get((config["fullinfo_run"], bsz), {})
        fi = FullInfo(fi_lines.values(), config["drafters"], config.get("seed", 0),
                      config.get("replay_exact")) if fi_lines else None
        ar = runs.get(("autoregressive", bsz), {})
        for setting, spec in config["settings"].items():
            ev = None
            if fi is not None:
                cost = setting_cost(setting, list(fi_lines.values()))
                ev = SettingEval(fi, spec["arms"], cost)
                costs[f"{setting}/bsz{bsz}"] = cost.to_dict()
            # best fixed arm: the exact best arm, or the best measured live candidate
            best = None
            if ev is not None:
                cands = ev.live_candidates(config.get("fixed_candidates", 2))
                live = {a: list(runs.get((run_name("fixed", arm=a), bsz), {}).values()) for a in cands}
                candidates[f"{setting}/bsz{bsz}"] = {
                    a: {"estimated_cost": float(ev.total[ev.arms.index(a)]),
                        "rounds": sum(len(l["records"]) for l in live[a]) if live[a] else None,
                        "tokens_per_s": _tokens_per_s(live[a], True, bsz)[0]} for a in cands}
                best = pick_best_fixed(setting, ev, live, bsz)
                best_fixed[f"{setting}/bsz{bsz}"] = {"arm": best, "exact": ev.exact}
            for domain, qids, whole in groups:
                sel = lambda run: [run[q] for q in qids if q in run]  # noqa: E731
                ar_tps = _tokens_per_s(sel(ar), whole, bsz)[0]
                group_rows = [_live_row(setting, domain, bsz, "autoregressive", sel(ar), whole, ev, ar_tps,
                                        ll("autoregressive", bsz), "autoregressive")]
                if best is not None:
                    name = run_name("fixed", arm=best)
                    group_rows.append(_live_row(setting, domain, bsz, "best_fixed", sel(runs.get((name, bsz), {})),
                                                whole, ev, ar_tps, ll(name, bsz), best))
                if ev is not None:
                    group_rows.append(_oracle_row(setting, domain, bsz, ev, qids, ll(config["fullinfo_run"], bsz)))
                extra = [b for b in JOINT_BASELINES if setting == "joint"]
                timed = {"autoregressive": "autoregressive", "best_fixed": run_name("fixed", arm=best)}
                for learner in [*config["learners"], *extra]:
                    name = timed[learner] = run_name("learner", setting, learner)
                    group_rows.append(_live_row(setting, domain, bsz, learner, sel(runs.get((name, bsz), {})),
                                                whole, ev, ar_tps, ll(name, bsz)))
                rows += [r for r in group_rows if r is not None]
                for row in group_rows:
                    if row is not None and row["learner"] in timed:
                        _repeat_timing(row, [runs.get((repeat_run(timed[row["learner"]], k), bsz), {}) for k in reps],
                                       [runs.get((repeat_run("autoregressive", k), bsz), {}) for k in reps],
                                       sel, whole, bsz)
            targets += _targets(rows, setting, stream, bsz)
    lossless_out = {"lossless": lossless["lossless"], "checked": lossless["checked"],
                    "mismatches": lossless["mismatches"][:20]}
    return {"rows": rows, "lossless": lossless_out, "best_fixed": best_fixed, "fixed_candidates": candidates,
            "cost_models": costs, "targets": targets}


def _targets(rows: Sequence[dict], setting: str, stream: str, bsz: int) -> list[dict]:
    get = {r["learner"]: r for r in rows if r["setting"] == setting and r["domain"] == stream and r["bsz"] == bsz}
    hedge, best, oracle = get.get("hedgespec"), get.get("best_fixed"), get.get("oracle")
    out = []

    def add(name, num, den):
        if num is not None and den:
            ratio = num / den
            need = TARGETS[setting, name]
            out.append({"setting": setting, "bsz": bsz, "target": name, "ratio": ratio, "required": need,
                        "met": bool(ratio >= need)})
    routed, routed_hedge = get.get("router"), get.get("router_hedgespec")
    if setting == "drafter" and routed is not None:
        add("router_mat_over_best_fixed", routed["mat"], best and best["mat"])
    if setting == "drafter" and routed_hedge is not None:
        add("router_hedgespec_mat_over_hedgespec", routed_hedge["mat"], hedge and hedge["mat"])
        add("router_hedgespec_mat_over_oracle", routed_hedge["mat"], oracle and oracle["mat"])
    if hedge is None:
        return out
    if setting == "drafter":
        add("hedgespec_mat_over_best_fixed", hedge["mat"], best and best["mat"])
        add("hedgespec_mat_over_oracle", hedge["mat"], oracle and oracle["mat"])
    elif setting == "joint":
        add("hedgespec_tps_over_best_fixed", hedge["tokens_per_s"], best and best["tokens_per_s"])
    return out

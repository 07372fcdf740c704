"""Study summaries from stored query lines: oracle, best fixed arm, regret, lossless (records in, never models).

A *study* (``specsel.study``, ``recipes/domain_eval.py``) decodes one stream of queries with
several *runs* (the autoregressive baseline, fixed arms, learners) at one or more batch sizes
and appends one JSON *query line* per finished query::

    {"run": "drafter/hedgespec", "bsz": 4, "batch": 3, "batch_qids": [...], "index": 12,
     "qid": "math/test/algebra/1.json", "domain": "math", "tokens": [...],
     "batch_wall_s": 3.1, "batch_new_tokens": 256, "records": [RoundRecord as dict, ...]}

One run per batch size decodes with full-information feedback (``config["fullinfo_run"]``):
its records give every drafter's acceptance at every committed position, from which, for
greedy decoding, every fixed arm's round count on every query is exact (``evaluators.replay``)
as long as each drafter's draft chain equals its teacher-forced predictions (n-gram, model and
early-exit drafters; not EAGLE heads, whose chains run on predicted features:
``config["replay_exact"]`` says which drafters are exact, and rows built on the others are
marked estimated).

Settings (``config["settings"]``):

* ``drafter``: arms = the drafters at one gamma; objective = accepted length. The cost of a
  query is its number of target rounds; the oracle and the best fixed arm are exact (see above).
* ``joint``: arms = drafters x gammas; objective = tokens per second. A round of arm
  ``(j, g)`` costs ``t_verify(g) + g * t_draft(j)``, in units of one autoregressive forward,
  with the step times fitted on the full-information run's own round timings
  (:class:`StepCost`). The per-query oracle, regret and % of oracle of this setting therefore
  rest on that cost model: they are estimates and labelled as such. Tokens/s columns are
  always measured live (the oracle has none).

Stopping-time regret (BanditSpec) of a run on a query = its cost minus the cost of the
per-query oracle arm (the fixed arm that is best on that very query), averaged over queries.
Fixed arms therefore have regret >= 0; an adaptive learner may go below 0 by switching arms.
``pct_oracle`` = 100 * sum(oracle cost) / sum(run cost).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from evaluators.records import acceptance_matrix
from evaluators.replay import is_greedy_record, rounds_fixed, simulate
from specsel.core.seeds import query_seed

SUMMARY_COLUMNS = ("setting", "domain", "bsz", "learner", "mat", "tokens_per_s", "speedup", "regret", "pct_oracle")
EXTRA_COLUMNS = ("arm", "lossless", "queries", "new_tokens", "rounds", "wall_s", "prefill_s", "decode_tokens_per_s",
                 "regret_unit", "exact")
LEARNERS = ("ucbspec", "exp3spec", "hedgespec", "epsilon_greedy", "round_robin")
ROW_ORDER = ("autoregressive", "best_fixed", "oracle") + LEARNERS
SETTINGS = ("drafter", "joint")
OBJECTIVE = {"drafter": "length", "joint": "throughput"}
TARGETS = {  # issue 5 acceptance targets on the mixed stream
    ("drafter", "hedgespec_mat_over_best_fixed"): 1.05,
    ("drafter", "hedgespec_mat_over_oracle"): 0.95,
    ("joint", "hedgespec_tps_over_best_fixed"): 1.0,
}


# ----------------------------------------------------------------------------- names


def arm_name(drafter: str | None, gamma: int) -> str:
    return "autoregressive" if drafter is None else f"{drafter}@{int(gamma)}"


def parse_arm(name: str) -> tuple[str | None, int]:
    if name == "autoregressive":
        return None, 0
    drafter, _, gamma = name.rpartition("@")
    if not drafter or not gamma.isdigit() or int(gamma) < 1:
        raise ValueError(f"bad arm name {name!r}: expected DRAFTER@GAMMA with GAMMA >= 1")
    return drafter, int(gamma)


def run_name(kind: str, setting: str | None = None, learner: str | None = None, arm: str | None = None) -> str:
    """autoregressive | fixed/<arm> | fullinfo/<arm> | <setting>/<learner>."""
    if kind == "autoregressive":
        return "autoregressive"
    if kind in ("fixed", "fullinfo"):
        return f"{kind}/{arm}"
    if kind == "learner":
        return f"{setting}/{learner}"
    raise ValueError(f"unknown run kind {kind!r}")


# ----------------------------------------------------------------------------- query lines


def complete_lines(lines: Iterable[dict]) -> list[dict]:
    """Lines of complete batches only (every query of the batch present); for a batch that was
    written twice (re-run after an interrupted write), the latest lines win."""
    batches: dict[tuple, dict[str, dict]] = {}
    for line in lines:
        batches.setdefault((line["run"], line["bsz"], line["batch"]), {})[line["qid"]] = line
    out = []
    for by_qid in batches.values():
        want = next(iter(by_qid.values()))["batch_qids"]
        if all(q in by_qid for q in want):
            out.extend(by_qid[q] for q in want)
    return out


def index_runs(lines: Iterable[dict]) -> dict[tuple[str, int], dict[str, dict]]:
    """(run, bsz) -> {qid: line}, complete batches only."""
    runs: dict[tuple[str, int], dict[str, dict]] = {}
    for line in complete_lines(lines):
        runs.setdefault((line["run"], int(line["bsz"])), {})[line["qid"]] = line
    return runs


def done_batches(lines: Iterable[dict]) -> set[tuple[str, int, int]]:
    """(run, bsz, batch) of every complete batch."""
    return {(l["run"], int(l["bsz"]), int(l["batch"])) for l in complete_lines(lines)}


def flat_records(lines: Iterable[dict]) -> list[dict]:
    """Per-round records with a `query` id (the evaluators.records layout), for replay."""
    out = []
    for line in lines:
        for rec in line["records"]:
            out.append({**rec, "query": line["qid"], "run": line["run"], "bsz": line["bsz"]})
    return out


# ----------------------------------------------------------------------------- costs


class RoundCost:
    """Every target round costs 1 (the `drafter` setting: cost = stopping time)."""
    unit = "rounds"
    estimated = False

    def relative(self, drafter: str | None, gamma: int) -> float:
        return 1.0

    def to_dict(self) -> dict:
        return {"unit": self.unit}


@dataclass
class StepCost:
    """Seconds per round of arm (j, g): ``t_verify(f_j g) + g * t_draft(j)``, fitted from records.

    ``t_verify(w) = verify0 + slope * w`` is a least-squares line through the (widest draft in
    the round, verify seconds) pairs of the rounds; ``t_draft(j)`` = drafter j's proposal
    seconds per draft step; ``f_j`` = the fraction of its gamma that drafter j actually
    drafted (an n-gram drafter often finds no match and drafts nothing, which makes its
    verify window narrower). ``relative`` divides by ``verify0``: the cost in autoregressive
    forwards, the unit of specsel.learners.policy.RelativeCostModel.
    """
    verify0: float
    slope: float
    draft_step: dict[str, float] = field(default_factory=dict)
    fill: dict[str, float] = field(default_factory=dict)
    unit = "ar_forwards"
    estimated = True

    @classmethod
    def fit(cls, lines: Iterable[dict]) -> "StepCost":
        rounds: dict[tuple, dict] = {}
        drafted: Counter = Counter()
        nominal: Counter = Counter()
        steps: dict[str, list[float]] = {}
        groups: dict[tuple, list[dict]] = {}
        for line in lines:
            for rec in line["records"]:
                key = (line["run"], line["bsz"], line["batch"], rec["round"])
                r = rounds.setdefault(key, {"w": 0, "t": rec["verify_s"]})
                r["w"] = max(r["w"], rec["drafted"])
                if rec["drafter"] is not None:
                    drafted[rec["drafter"]] += rec["drafted"]
                    nominal[rec["drafter"]] += rec["gamma"]
                    groups.setdefault(key + (rec["drafter"],), []).append(rec)
        for (*_, name), recs in groups.items():
            g = max(r["gamma"] for r in recs)
            if g > 0:
                steps.setdefault(name, []).append(recs[0]["draft_s"] / g)
        if not rounds:
            raise ValueError("no rounds to fit step costs on")
        w = np.array([r["w"] for r in rounds.values()], dtype=float)
        t = np.array([r["t"] for r in rounds.values()], dtype=float)
        if len(np.unique(w)) >= 2:
            slope, verify0 = np.polyfit(w, t, 1)
        else:
            slope, verify0 = 0.0, float(t.mean())
        slope = max(float(slope), 0.0)
        if not verify0 > 0:
            verify0 = float(t[w == w.min()].mean())
        return cls(float(verify0), slope, {k: float(np.mean(v)) for k, v in steps.items()},
                   {k: drafted[k] / nominal[k] for k in nominal if nominal[k]})

    def seconds(self, drafter: str | None, gamma: int) -> float:
        if drafter is None or gamma == 0:
            return self.verify0
        f = self.fill.get(drafter, 1.0)
        return self.verify0 + self.slope * f * gamma + gamma * self.draft_step.get(drafter, 0.0)

    def relative(self, drafter: str | None, gamma: int) -> float:
        return self.seconds(drafter, gamma) / self.verify0

    def to_dict(self) -> dict:
        return {"unit": self.unit, "verify0_s": self.verify0, "verify_slope_s_per_token": self.slope,
                "draft_step_s": self.draft_step, "fill": self.fill}


def run_cost(line: dict, cost) -> float:
    """Cost of one query's live rounds under `cost` (rounds, or AR-forward equivalents)."""
    return float(sum(cost.relative(r["drafter"], r["gamma"]) for r in line["records"]))


# ----------------------------------------------------------------------------- full information


class FullInfo:
    """Per-query acceptance matrices of one full-information run; fixed arms and oracles from them."""

    def __init__(self, lines: Iterable[dict], drafters: Sequence[str], seed: int = 0,
                 replay_exact: dict[str, bool] | None = None):
        self.lines = sorted(lines, key=lambda l: l["index"])
        self.drafters = list(drafters)
        self.seed = seed
        self.replay_exact = {d: bool((replay_exact or {}).get(d, True)) for d in self.drafters}
        self.matrices = {l["qid"]: acceptance_matrix(l["records"], self.drafters) for l in self.lines}
        self.index = {l["qid"]: l["index"] for l in self.lines}
        self.tokens = {l["qid"]: len(l["tokens"]) for l in self.lines}
        self.greedy = all(is_greedy_record(m) for m in self.matrices.values())

    @property
    def qids(self) -> list[str]:
        return [l["qid"] for l in self.lines]

    def pair(self, drafter: str, gamma: int) -> tuple[int, int]:
        return self.drafters.index(drafter), int(gamma)

    def fixed_rounds(self, qid: str, drafter: str, gamma: int) -> int:
        """Rounds of the fixed arm on this query: exact for greedy records, one Monte-Carlo draw
        (seeded) of the acceptances otherwise."""
        m = self.matrices[qid]
        if m.shape[1] == 0:
            return 0
        if self.greedy:
            return rounds_fixed(m, self.pair(drafter, gamma))
        from specsel.learners import make_learner
        fixed = make_learner("fixed", 1, reward_range=(1.0, gamma + 1.0))
        return len(simulate(fixed, m, [self.pair(drafter, gamma)], feedback="bandit",
                            seed=query_seed(self.seed, self.index[qid])))


class SettingEval:
    """Every fixed arm of a setting on every query of a full-information run."""

    def __init__(self, fullinfo: FullInfo, arms: Sequence[str], cost):
        self.fi, self.arms, self.cost = fullinfo, list(arms), cost
        self.qids = fullinfo.qids
        parsed = [parse_arm(a) for a in self.arms]
        self.rounds = np.array([[fullinfo.fixed_rounds(q, d, g) for d, g in parsed] for q in self.qids], dtype=float)
        self.unit_cost = np.array([cost.relative(d, g) for d, g in parsed])
        self.costs = self.rounds * self.unit_cost[None, :]
        best = self.costs.argmin(axis=1) if len(self.qids) else np.zeros(0, dtype=int)
        self.oracle_arm = {q: self.arms[i] for q, i in zip(self.qids, best)}
        self.oracle_cost = {q: float(self.costs[k, i]) for k, (q, i) in enumerate(zip(self.qids, best))}
        self.oracle_rounds = {q: float(self.rounds[k, i]) for k, (q, i) in enumerate(zip(self.qids, best))}
        self.total = self.costs.sum(axis=0)
        self.ranking = [self.arms[i] for i in np.argsort(self.total, kind="stable")]

    @property
    def exact(self) -> bool:
        """True when every fixed arm's cost on every query is exact (greedy records, round costs,
        drafters whose chains equal their teacher-forced predictions)."""
        return (self.fi.greedy and not self.cost.estimated
                and all(self.fi.replay_exact[parse_arm(a)[0]] for a in self.arms))

    def candidates(self, k: int) -> list[str]:
        """The k fixed arms of lowest total cost over the stream (all when k <= 0)."""
        return list(self.ranking) if k <= 0 else self.ranking[:k]

    def live_candidates(self, fixed_candidates: int) -> list[str]:
        """The fixed arms to run live: the best arm alone when the ranking is exact, else the
        `fixed_candidates` best by estimate (every arm when fixed_candidates <= 0)."""
        return self.candidates(1 if self.exact and fixed_candidates > 0 else fixed_candidates)


def fixed_arms_to_run(fullinfo: FullInfo, settings: dict, fixed_candidates: int) -> dict[str, list[str]]:
    """Fixed arms each setting runs live (SettingEval.live_candidates)."""
    return {setting: SettingEval(fullinfo, spec["arms"], setting_cost(setting, fullinfo.lines))
            .live_candidates(fixed_candidates) for setting, spec in settings.items()}


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


def setting_cost(setting: str, fullinfo_lines: Sequence[dict]):
    return StepCost.fit(fullinfo_lines) if setting == "joint" else RoundCost()


# ----------------------------------------------------------------------------- lossless


def check_lossless(runs: dict[tuple[str, int], dict[str, dict]], bszs: Sequence[int]) -> dict:
    """Greedy: every run's tokens equal the autoregressive run's at the same batch size, and the
    autoregressive runs agree across batch sizes. Returns {"lossless", "checked", "by_run", "mismatches"}."""
    checked, mismatches = 0, []
    by_run: dict[tuple[str, int], bool] = {}
    ref0 = runs.get(("autoregressive", bszs[0]), {}) if bszs else {}
    for (run, bsz), lines in sorted(runs.items()):
        ref = ref0 if run == "autoregressive" else runs.get(("autoregressive", bsz), {})
        if run == "autoregressive" and bsz == bszs[0]:
            by_run[run, bsz] = True
            continue
        ok = True
        for qid, line in lines.items():
            if qid not in ref:
                continue
            checked += 1
            if line["tokens"] != ref[qid]["tokens"]:
                ok = False
                mismatches.append({"run": run, "bsz": bsz, "qid": qid})
        by_run[run, bsz] = ok
    return {"lossless": not mismatches, "checked": checked, "by_run": by_run, "mismatches": mismatches}


# ----------------------------------------------------------------------------- rows


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


def _row(setting, domain, bsz, learner, **kw) -> dict:
    row = dict.fromkeys(SUMMARY_COLUMNS + EXTRA_COLUMNS)
    row.update(setting=setting, domain=domain, bsz=bsz, learner=learner)
    row.update(kw)
    return row


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
    row = _row(setting, domain, bsz, learner, arm=arm, lossless=lossless, queries=len(lines),
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


def _oracle_row(setting, domain, bsz, ev: SettingEval, qids: Sequence[str], lossless: bool | None) -> dict | None:
    qs = [q for q in qids if q in ev.oracle_cost]
    if not qs:
        return None
    tokens = sum(ev.fi.tokens[q] for q in qs)
    rounds = sum(ev.oracle_rounds[q] for q in qs)
    arms = Counter(ev.oracle_arm[q] for q in qs)
    label = "per-query (" + ", ".join(f"{a} x{n}" for a, n in arms.most_common(3)) + (", ..." if len(arms) > 3 else "") + ")"
    return _row(setting, domain, bsz, "oracle", mat=tokens / rounds if rounds else None, tokens_per_s=None,
                speedup=None, regret=0.0, pct_oracle=100.0, arm=label, lossless=lossless, queries=len(qs),
                new_tokens=tokens, rounds=int(rounds), regret_unit=ev.cost.unit + ("" if ev.exact else " (estimated)"),
                exact=ev.exact)


def summarize_study(lines: Iterable[dict], config: dict) -> dict:
    """Summary rows (one per setting x domain x bsz x learner), lossless check, best fixed arms,
    the acceptance-target ratios and the cost models used.

    `config` holds: settings {name: {"arms": [...]}}, learners, bsz, queries [{qid, domain,
    index}], fullinfo_run, fixed_candidates, drafters, seed, temperature.
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
                for learner in config["learners"]:
                    name = run_name("learner", setting, learner)
                    group_rows.append(_live_row(setting, domain, bsz, learner, sel(runs.get((name, bsz), {})),
                                                whole, ev, ar_tps, ll(name, bsz)))
                rows += [r for r in group_rows if r is not None]
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
    if hedge is None:
        return out
    if setting == "drafter":
        add("hedgespec_mat_over_best_fixed", hedge["mat"], best and best["mat"])
        add("hedgespec_mat_over_oracle", hedge["mat"], oracle and oracle["mat"])
    elif setting == "joint":
        add("hedgespec_tps_over_best_fixed", hedge["tokens_per_s"], best and best["tokens_per_s"])
    return out


# ----------------------------------------------------------------------------- regret vs number of arms


def interleaved_arms(arms: Sequence[str]) -> list[str]:
    """Arms reordered so every prefix mixes drafters: (d0, g0), (d1, g0), ..., (d0, g1), ..."""
    parsed = [parse_arm(a) for a in arms]
    drafters = list(dict.fromkeys(d for d, _ in parsed))
    by_drafter = {d: [a for a, (dd, _) in zip(arms, parsed) if dd == d] for d in drafters}
    out, k = [], 0
    while len(out) < len(arms):
        out += [by_drafter[d][k] for d in drafters if k < len(by_drafter[d])]
        k += 1
    return out


def regret_vs_arms(fullinfo: FullInfo, arms: Sequence[str], learners: Sequence[str], seed: int = 0,
                   sizes: Sequence[int] | None = None) -> dict:
    """Cumulative stopping-time regret (rounds, summed over the stream) of each learner replayed
    offline on pools of the first K arms (interleaved order), against the per-query oracle over
    those K arms. Per-query learners are seeded as specsel.learners.policy.LearnerPolicy seeds them, so
    for greedy records a replay equals the live run it stands for."""
    from specsel.learners import make_learner
    from specsel.core.seeds import query_seed

    order = interleaved_arms(arms)
    n = len(order)
    if sizes is None:
        sizes = list(range(1, n + 1)) if n <= 16 else sorted({max(1, round(n * f / 8)) for f in range(1, 9)})
    parsed = [parse_arm(a) for a in order]
    pairs_all = [fullinfo.pair(d, g) for d, g in parsed]
    rounds = {q: [fullinfo.fixed_rounds(q, d, g) for d, g in parsed] for q in fullinfo.qids}
    out = {"arms": order, "sizes": list(sizes), "regret": {l: [] for l in learners}, "oracle_rounds": []}
    for k in sizes:
        pairs = pairs_all[:k]
        high = max(g for _, g in pairs) + 1.0
        oracle = {q: min(rounds[q][:k]) for q in fullinfo.qids}
        out["oracle_rounds"].append(float(sum(oracle.values())))
        for learner in learners:
            total = 0.0
            for q in fullinfo.qids:
                m = fullinfo.matrices[q]
                if m.shape[1] == 0:
                    continue
                lrn = make_learner(learner, k, reward_range=(1.0, high), seed=query_seed(seed, fullinfo.index[q]))
                total += len(simulate(lrn, m, pairs, seed=query_seed(seed, fullinfo.index[q]))) - oracle[q]
            out["regret"][learner].append(total)
    return out


# ----------------------------------------------------------------------------- offline replay of learners


def replay_rows(fullinfo: FullInfo, arms: Sequence[str], learners: Sequence[str], seed: int = 0,
                setting: str = "replay", bsz: int | None = None) -> list[dict]:
    """Re-run learners offline on full-information records (length objective): one row each
    for best_fixed, oracle and every learner, with MAT, stopping-time regret (rounds, vs the
    per-query oracle) and % of oracle. Exact for greedy records, one Monte-Carlo draw otherwise."""
    from specsel.learners import make_learner
    from specsel.core.seeds import query_seed

    ev = SettingEval(fullinfo, arms, RoundCost())
    parsed = [parse_arm(a) for a in ev.arms]
    pairs = [fullinfo.pair(d, g) for d, g in parsed]
    high = max(g for _, g in parsed) + 1.0
    qids = [q for q in ev.qids if fullinfo.matrices[q].shape[1] > 0]
    tokens = sum(fullinfo.tokens[q] for q in qids)
    oracle = np.array([ev.oracle_rounds[q] for q in qids])
    unit = "rounds" if fullinfo.greedy else "rounds (Monte-Carlo)"

    def row(learner, rounds, arm=""):
        rounds = np.asarray(rounds, dtype=float)
        return _row(setting, "mixed", bsz, learner, arm=arm, mat=tokens / rounds.sum() if rounds.sum() else None,
                    regret=float((rounds - oracle).mean()) if len(qids) else None,
                    pct_oracle=100.0 * oracle.sum() / rounds.sum() if rounds.sum() else None,
                    queries=len(qids), new_tokens=tokens, rounds=int(rounds.sum()), regret_unit=unit,
                    exact=fullinfo.greedy)

    best = ev.ranking[0]
    k = ev.arms.index(best)
    index = {q: i for i, q in enumerate(ev.qids)}
    out = [row("best_fixed", [ev.rounds[index[q], k] for q in qids], best),
           row("oracle", oracle, "per-query")]
    for learner in learners:
        rounds = []
        for q in qids:
            lrn = make_learner(learner, len(pairs), reward_range=(1.0, high), seed=query_seed(seed, fullinfo.index[q]))
            rounds.append(len(simulate(lrn, fullinfo.matrices[q], pairs, seed=query_seed(seed, fullinfo.index[q]))))
        out.append(row(learner, rounds))
    return out

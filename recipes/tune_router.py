"""Choose the router prior's uniform floor (and HedgeSpec's discount under it) on router-training
queries only, with out-of-fold priors.

    specsel router collect --data-dir ../shared/data --domains math,humaneval,medqa --skip 30 --limit 50 \
        --settings drafter --learners hedgespec --out runs/router_collect
    python recipes/tune_router.py --records runs/router_collect/queries.jsonl

No decoding: the collect run's full-information records give every drafter's acceptance at every
position, so greedy replays of the drafter setting are exact for replay-exact drafters and
estimates for EAGLE heads and their LoRA experts (as in the study). Each query's prior comes from
a router fitted on the other folds (k-fold, the same splits as `specsel router fit`'s
cross-validation), so no query is routed by a router that saw it. Prints MAT (committed tokens
per target round) of: the best fixed drafter, the per-query oracle, HedgeSpec, the routing
baseline, and router_hedgespec at every --floors x --discounts value, with ratios to HedgeSpec
and to the oracle.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from specsel.core.arms import Arm
from specsel.core.costs import setting_cost
from specsel.core.seeds import query_seed
from specsel.flags import add_flags, flag_parser, parse_flags, run_command
from specsel.learners import make_learner
from specsel.replay.fullinfo import FullInfo, SettingEval
from specsel.replay.simulate import simulate
from specsel.router import RouterModel
from specsel.router.model import cost_labels
from specsel.study import parse_csv
from specsel.study.router_fit import config_of, fullinfo_of, query_texts, setting_arms


def parse_args(argv=None):
    ap = flag_parser("tune_router", __doc__)
    add_flags(ap, "records", "data_dir", "discounts", "folds", "json", required=("records",), discounts="0.5,0.7,0.9")
    ap.add_argument("--floors", default="0.05,0.1,0.2,0.4", help="comma list of the router prior's uniform floors")
    return parse_flags(ap, argv)


def out_of_fold_probs(texts, costs, arms, folds: int, seed: int = 0) -> np.ndarray:
    """[n, arms]: each query's router probabilities from a router fitted without its fold."""
    labels = cost_labels(costs)
    counts = np.bincount(labels, minlength=len(arms))
    strat = counts[counts > 0].min() >= folds
    split = (StratifiedKFold if strat else KFold)(n_splits=folds, shuffle=True, random_state=seed)
    probs = np.zeros(costs.shape)
    for train, test in split.split(np.zeros(len(texts)), labels if strat else None):
        model = RouterModel.fit([texts[i] for i in train], costs[train], arms, "drafter", seed=seed)
        probs[test] = model.predict_proba([texts[i] for i in test])
    return probs


def replay_mat(fi: FullInfo, learner: str, pairs, seed: int, priors=None, **kw) -> float:
    rounds = tokens = 0
    high = max(g for _, g in pairs) + 1.0
    for k, q in enumerate(fi.qids):
        extra = {} if priors is None else {"prior": priors[k]}
        lrn = make_learner(learner, len(pairs), reward_range=(1.0, high), seed=query_seed(seed, fi.index[q]),
                           **extra, **kw)
        rounds += len(simulate(lrn, fi.matrices[q], pairs, seed=query_seed(seed, fi.index[q])))
        tokens += fi.tokens[q]
    return tokens / rounds


def main(argv=None) -> int:
    args = parse_args(argv)
    path = Path(args.records)
    config = config_of(path)
    fi = fullinfo_of(path, config)
    arms = setting_arms(config, "drafter")
    ev = SettingEval(fi, arms, setting_cost("drafter", fi.lines))
    texts = query_texts(config, fi.qids, args.data_dir)
    probs = out_of_fold_probs(texts, ev.costs, arms, args.folds)
    pairs = [fi.pair(Arm.parse(a).drafter, Arm.parse(a).gamma) for a in arms]
    seed = config.get("seed", 0)
    tokens = sum(fi.tokens[q] for q in fi.qids)
    best = tokens / ev.rounds.sum(axis=0).min()
    oracle = tokens / ev.rounds.min(axis=1).sum()
    hedge = replay_mat(fi, "hedgespec", pairs, seed)
    rows = [("best fixed", "", "", best), ("oracle", "", "", oracle), ("hedgespec", "", 0.5, hedge)]
    for floor in (float(f) for f in parse_csv(args.floors)):
        prior = (1 - floor) * probs + floor / len(arms)
        rows.append(("router", floor, "", replay_mat(fi, "router", pairs, seed, prior)))
        for discount in (float(d) for d in parse_csv(args.discounts)):
            rows.append(("router_hedgespec", floor, discount,
                         replay_mat(fi, "router_hedgespec", pairs, seed, prior, discount=discount)))
    exact = fi.exact_for(arms)
    print(f"{len(fi.qids)} queries of {path}, drafter setting ({', '.join(arms)}), out-of-fold priors "
          f"({args.folds} folds); replays {'exact' if exact else 'estimated (EAGLE/LoRA drafters)'}")
    print(f"{'row':<18} {'floor':>6} {'discount':>8} {'MAT':>7} {'/hedgespec':>10} {'/oracle':>8} {'/best':>7}")
    for name, floor, discount, mat in rows:
        print(f"{name:<18} {floor!s:>6} {discount!s:>8} {mat:>7.3f} {mat / hedge:>10.3f} {mat / oracle:>8.3f} "
              f"{mat / best:>7.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps([dict(zip(("row", "floor", "discount", "mat"), r)) for r in rows],
                                             indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main, "tune_router"))

"""Drafter benchmark: MAT, tokens/s and speedup of every (drafter, gamma) arm per domain.

    python recipes/bench_drafters.py --data-dir ../shared/data --json results/bench_drafters.json

On the embedded target, greedy, batch 1: for each domain (MATH-500, HumanEval, MedQA test[:300];
held-out prompts, never trained on) and each prompt, the autoregressive path and every arm
(pool x --gammas) decode the same prompt one after the other, in an order rotated per prompt so
that machine drift spreads evenly. Per arm and domain:
    mat          committed tokens per target forward (bonus included)
    tokens_per_s generated tokens / wall seconds (prefill included, as for the baseline)
    speedup      tokens_per_s / the autoregressive tokens_per_s of the same prompts in this run
    draft_ms     the drafter's proposal time per drafted token (its rounds' draft_s / drafted)
    verify_ms    mean target forward + verification per round (rounds after the first, whose
                 forward is the prefill); verify_x = verify_ms / the autoregressive arm's, the
                 cost of verifying a window of gamma + 1 tokens in plain forwards
Every output is compared with the autoregressive one (greedy must be lossless).
Per-prompt results are appended to <json>.partial.jsonl as they finish: rerunning the same
command resumes where an interrupted run stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from drafters.pool import default_pool, pool_names, weights_fingerprint
from specsel import Arm, SpecEngine
from specsel.data import DOMAIN_SPEC_HELP, domains_argument, user_domain_records
from specsel.modeling.target import EMBEDDED_DEFAULT, load_target
from specsel.study.heldout import heldout_prompts


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--domains", default="math,humaneval,medqa", help=DOMAIN_SPEC_HELP)
    ap.add_argument("--prompts", type=int, default=20, help="held-out prompts per domain")
    ap.add_argument("--skip", type=int, default=0,
                    help="first eval prompt per domain (50: the benchmark prompts no study or tuning recipe uses)")
    ap.add_argument("--drafters", default=",".join(pool_names()), help="comma list of pool members")
    ap.add_argument("--gammas", default="2,4")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", required=True, help="write the results here")
    args = ap.parse_args(argv)
    args.domain_names = domains_argument(ap, args.domains)
    return args


def append_line(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:     # a line cut by an interruption
            break
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    domains = args.domain_names
    gammas = [int(g) for g in args.gammas.split(",") if g]
    if any(g < 1 for g in gammas):
        raise SystemExit("bench_drafters: every gamma must be >= 1")
    target, tokenizer = load_target(args.target)
    pool = default_pool(target, [d for d in args.drafters.split(",") if d])
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    arms = {"autoregressive": Arm.autoregressive()} | {f"{d}@{g}": Arm(d, g) for d in pool for g in gammas}
    N = args.max_new_tokens
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial.jsonl")
    config = {"target": args.target, "max_new_tokens": N, "arms": list(arms),
              "weights": weights_fingerprint(list(pool)), **({"skip": args.skip} if args.skip else {})}
    users = user_domain_records(domains)        # a changed NAME=PATH file is not mixed in
    config.update({"user_domains": users} if users else {})
    done = read_lines(partial)
    if done and done[0].get("config") != config:
        raise SystemExit(f"bench_drafters: {partial} comes from another configuration (arms, token budget, "
                         "drafter weights or user data file); delete it or change --json")
    if not done:
        append_line(partial, {"config": config})
    finished = {(r["domain"], r["prompt"]) for r in done[1:]}

    engine.generate(heldout_prompts(tokenizer, domains[0], args.data_dir, 1), list(arms.values())[:1],
                    max_new_tokens=4)                         # warm-up
    names = list(arms)
    jobs = [(d, i, p) for d in domains
            for i, p in enumerate(heldout_prompts(tokenizer, d, args.data_dir, args.prompts, args.skip))]
    for k, (domain, i, prompt) in enumerate(tqdm(jobs, desc="bench drafters", unit="prompt")):
        if (domain, i) in finished:
            continue
        row = {"domain": domain, "prompt": i, "arms": {}}
        outputs = {}
        for name in names[k % len(names):] + names[: k % len(names)]:
            t0 = time.perf_counter()
            res = engine.generate([prompt], arms[name], max_new_tokens=N)
            seconds = time.perf_counter() - t0
            outputs[name] = res.tokens[0]
            later = [r for r in res.records if r.round > 0]      # round 0's forward is the prefill
            row["arms"][name] = {"seconds": seconds, "tokens": len(res.tokens[0]), "rounds": len(res.records),
                                 "draft_s": sum(r.draft_s for r in res.records),
                                 "drafted": sum(r.drafted for r in res.records),
                                 "verify_s": sum(r.verify_s for r in later), "verify_rounds": len(later)}
        row["lossless"] = all(o == outputs["autoregressive"] for o in outputs.values())
        append_line(partial, row)

    rows = read_lines(partial)[1:]
    results, lossless = [], all(r["lossless"] for r in rows)
    for domain in domains:
        mine = [r for r in rows if r["domain"] == domain]
        def total(name, key):
            return sum(r["arms"][name].get(key, 0) for r in mine)

        def verify_ms(name):
            return 1000 * total(name, "verify_s") / max(total(name, "verify_rounds"), 1)
        ar_tps = total("autoregressive", "tokens") / total("autoregressive", "seconds")
        for name, arm in arms.items():
            tps = total(name, "tokens") / total(name, "seconds")
            results.append({"domain": domain, "drafter": arm.drafter or "autoregressive", "gamma": arm.gamma,
                            "mat": round(total(name, "tokens") / total(name, "rounds"), 3),
                            "tokens_per_s": round(tps, 2), "speedup": round(tps / ar_tps, 3),
                            "draft_ms": round(1000 * total(name, "draft_s") / max(total(name, "drafted"), 1), 2),
                            "verify_ms": round(verify_ms(name), 2),
                            "verify_x": round(verify_ms(name) / max(verify_ms("autoregressive"), 1e-9), 3),
                            "prompts": len(mine)})
    report = {**config, "prompts_per_domain": args.prompts, "lossless": lossless, "threads": torch.get_num_threads(),
              "arms": results}
    out.write_text(json.dumps(report, indent=2))
    print(f"\n{'domain':<10}{'drafter':<15}{'gamma':>6}{'MAT':>7}{'tok/s':>8}{'speedup':>9}{'draft ms':>10}"
          f"{'verify ms':>11}{'verify x':>10}")
    for r in results:
        print(f"{r['domain']:<10}{r['drafter']:<15}{r['gamma']:>6}{r['mat']:>7.2f}{r['tokens_per_s']:>8.1f}"
              f"{r['speedup']:>9.2f}{r['draft_ms']:>10.2f}{r['verify_ms']:>11.2f}{r['verify_x']:>10.2f}")
    print(f"lossless {lossless}")
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(main())

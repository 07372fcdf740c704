"""EAGLE family benchmark: a head's LoRA experts drafting in one forward, against separate heads.

    python recipes/bench_family.py --data-dir ../shared/data --repeats 3 --threads 2

The default pool's EAGLE head and its three LoRA experts form one family
(drafters/eagle_family.py): one head cache, each row's slot run with its own adapter, so rows
playing different experts draft in one head forward per step, and the experts are scored in
one feed. This decodes the same batches with that pool and with the experts on separate head
copies (`default_pool(one_family=False)`), greedy, the two pools alternating within each batch
and repeat, and prints tokens/s family / separate per run: the median over the repeats and its
spread. Runs (of the one executor, interleaved and repeated: specsel.study.ab): `experts` (row i
plays the i-th of eagle and the experts, at --gamma, bandit feedback) and `hedgespec` (the joint
FactoredHedge with full information, each pool's draft calls in its batch cost). Default prompts:
the mixed stream's tuning queries (MATH, HumanEval, MedQA queries 31-34 of each). Every output
must equal the first run's (exit 1 if not).
"""
from __future__ import annotations

import sys

from specsel.flags import add_flags, flag_parser, one_int, parse_flags, run_command

POOLS = ("family", "separate")
RUNS = ("experts", "hedgespec")
MEMBERS = ("eagle", "lora_math", "lora_code", "lora_medical")


def parse_args(argv=None):
    ap = flag_parser("bench_family", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "skip", "limit", "bsz", "gamma", "gammas", "max_new_tokens",
              "score_every", "repeats", "threads", "out", "json", "no_progress", skip=31, limit=4, gamma=2,
              score_every=3, repeats=3, threads=2, out="results/bench_family")
    ap.add_argument("--runs", default=",".join(RUNS), help=f"comma list of {', '.join(RUNS)}")
    args = parse_flags(ap, argv)
    from specsel.data import domains_argument
    from specsel.options import parse_csv, parse_ints
    args.runs = parse_csv(args.runs)
    if not args.runs or any(r not in RUNS for r in args.runs):
        ap.error(f"--runs takes {', '.join(RUNS)} (got {','.join(args.runs) or 'nothing'})")
    args.gammas, args.bsz = parse_ints(args.gammas, "--gammas"), one_int(args, "bsz")
    args.domain_names = domains_argument(ap, args.domains)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from dataclasses import replace

    import torch

    from drafters.pool import default_pool
    from specsel import Arm, SpecEngine
    from specsel.core.drafting import draft_calls
    from specsel.modeling.target import load_target
    from specsel.study import RunSpec, load_items
    from specsel.study.ab import report_ab, run_ab
    from specsel.study.executor import Decoder
    from specsel.study.policies import PerQueryArms, PolicyFactory

    class Pools(Decoder):
        """Each run decodes on its pool's engine (RunSpec.options["pool"]); `experts` plays, on the
        query at stream position i, member i mod 4 at --gamma (every row of a batch of 4 another)."""

        def __init__(self, engines):
            self.engines = engines
            self.factories = {p: PolicyFactory(list(e.drafters), draft_calls(e.drafters)) for p, e in engines.items()}

        def warm_up(self, prompt):
            for engine in self.engines.values():
                engine.generate([list(prompt)] * len(MEMBERS), [Arm(m, 2) for m in MEMBERS], max_new_tokens=4)

        def policy(self, spec, bsz):
            if spec.kind == "experts":
                return PerQueryArms(lambda i: Arm(MEMBERS[i % len(MEMBERS)], args.gamma))
            pool = dict(spec.options)["pool"]         # which engine; not an option of the policy
            return self.factories[pool].build(replace(spec, options=tuple(o for o in spec.options if o[0] != "pool")),
                                              bsz)

        def decode(self, spec, policy, prompts, seed):
            full = spec.kind == "factored"
            return self.engines[dict(spec.options)["pool"]].generate(
                prompts, policy, max_new_tokens=args.max_new_tokens, seed=seed, feedback="full" if full else "bandit",
                score_every=args.score_every if full else 1)

    torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    engines = {p: SpecEngine(target, default_pool(target, one_family=p == "family"),
                             eos_token_id=tokenizer.eos_token_id) for p in POOLS}
    items = load_items(tokenizer, args.domain_names, args.data_dir, args.limit, seed=0, skip=args.skip)
    kinds = {"experts": dict(kind="experts"), "hedgespec": dict(kind="factored", learner="hedgespec",
                                                                 gammas=tuple(args.gammas))}
    runs = [RunSpec(f"{run}/{pool}", setting="joint", options=(("pool", pool),), **kinds[run])
            for run in args.runs for pool in POOLS]
    result = run_ab(items, args.out, Pools(engines), runs, args.bsz, args.repeats,
                    {run: (f"{run}/family", f"{run}/separate") for run in args.runs}, not args.no_progress)
    return report_ab(result, "bench_family", "tokens/s family / separate", args.out, args.json)


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_family"))

"""KV cache benchmark: appending in place (GrowingLayer) against transformers' DynamicCache, side by side.

    python recipes/bench_cache.py --data-dir ../shared/data --repeats 3 --threads 2

transformers' DynamicLayer concatenates each forward's keys and values to the whole cache, so a
forward copies every cached token of every layer; specsel's RaggedKVCache appends into buffers
with spare room instead (specsel/modeling/growing.py). This decodes the same batches both ways
(`specsel.modeling.kvcache.APPEND_IN_PLACE` on and off), greedy, with every --arms arm, as runs of
the one executor (interleaved, repeated; specsel.study.ab), and prints tokens/s in place /
concatenating per arm: the median of the per-batch ratios and its spread. Default prompts: the
general stream's (AlpacaEval instructions and CNN/DailyMail articles of 400-1,700 tokens, queries
0-3 of each), where long caches make the copy costly. Every output must equal the first run's
(exit 1 if not).
"""
from __future__ import annotations

import sys

from specsel.flags import add_flags, flag_parser, one_int, parse_flags, run_command

MODES = {"in_place": True, "concatenate": False}


def parse_args(argv=None):
    ap = flag_parser("bench_cache", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "skip", "limit", "bsz", "max_new_tokens", "repeats", "threads",
              "out", "json", "no_progress", domains="alpaca,summarization", limit=4, repeats=3, threads=2,
              out="results/bench_cache")
    ap.add_argument("--arms", default="autoregressive,eagle@2", help="comma list of arms of the default pool")
    args = parse_flags(ap, argv)
    from specsel import Arm
    from specsel.data import domains_argument
    from specsel.options import parse_csv
    try:
        args.arms = [Arm.parse(a) for a in parse_csv(args.arms)]
    except ValueError as e:
        ap.error(f"--arms: {e}")
    args.bsz = one_int(args, "bsz")
    args.domain_names = domains_argument(ap, args.domains)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import specsel.modeling.kvcache as kvcache
    from specsel import SpecEngine
    from specsel.modeling.target import load_target
    from specsel.study import RunSpec, load_items, load_pool
    from specsel.study.ab import report_ab, run_ab
    from specsel.study.decoding import EngineDecoder
    from specsel.study.policies import PolicyFactory

    class CacheModes(EngineDecoder):
        """Each run decodes with its cache mode (RunSpec.options), the default restored after."""

        def decode(self, spec, policy, prompts, seed):
            kvcache.APPEND_IN_PLACE = dict(spec.options)["in_place"]
            try:
                return super().decode(spec, policy, prompts, seed)
            finally:
                kvcache.APPEND_IN_PLACE = True

    torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    pool = load_pool(target, sorted({a.drafter for a in args.arms if a.drafter}) or ["ngram"])
    items = load_items(tokenizer, args.domain_names, args.data_dir, args.limit, seed=0, skip=args.skip)
    runs = [RunSpec(f"{mode}/{arm}", "fixed", arm=str(arm), options=(("in_place", flag),))
            for arm in args.arms for mode, flag in MODES.items()]
    decoder = CacheModes(SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id), PolicyFactory(list(pool)),
                         args.max_new_tokens)
    result = run_ab(items, args.out, decoder, runs, args.bsz, args.repeats,
                    {str(a): (f"in_place/{a}", f"concatenate/{a}") for a in args.arms}, not args.no_progress)
    return report_ab(result, "bench_cache", "tokens/s in place / concatenating", args.out, args.json)


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_cache"))

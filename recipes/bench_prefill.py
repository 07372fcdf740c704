"""Prefill benchmark: length-grouped prefill against one padded forward, side by side.

    python recipes/bench_prefill.py --data-dir ../shared/data --skip 30 --limit 20 --bsz 4 --repeats 3

The study's mixed stream (MATH, HumanEval, MedQA; eval queries skip..skip+limit-1 of each, which
the default study never uses) is cut into batches of --bsz prompts, as the study batches them.
Each batch's prompts are prefilled into a fresh RaggedKVCache twice, in alternating order: once
as one forward padded to the longest prompt (what the engine did before), once in length groups
(`RaggedKVCache.prefill`, what it does now), as two runs of the one executor (interleaved and
repeated, specsel.study.ab). Both fill the same cache; the target features EAGLE heads read are
captured in both. Prints the median of the per-batch ratios of prefill speed and its spread; --json
writes the same.
"""
from __future__ import annotations

import sys

from specsel.flags import add_flags, flag_parser, one_int, parse_flags, run_command


def main(argv=None) -> int:
    ap = flag_parser("bench_prefill", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "skip", "limit", "bsz", "repeats", "threads", "out", "json",
              "no_progress", skip=30, limit=20, repeats=3, threads=2, out="results/bench_prefill")
    ap.add_argument("--max-padding", type=float, default=0.25, help="grouped prefill's padding bound")
    args = parse_flags(ap, argv)
    from specsel.data import domains_argument
    domains = domains_argument(ap, args.domains)
    import time

    import torch

    from specsel.engine import GenerationResult
    from specsel.modeling.compat import decoder_stack
    from specsel.modeling.kvcache import RaggedKVCache
    from specsel.modeling.target import load_target
    from specsel.study import RunSpec, load_items
    from specsel.study.ab import report_ab, run_ab
    from specsel.study.executor import Decoder

    class Prefill(Decoder):
        """Prefill a batch into a fresh cache, padded or in length groups (RunSpec.options); its
        "tokens" are the prompt tokens prefilled, so tokens/s is prefill throughput."""

        def warm_up(self, prompt):
            self.decode(runs[1], None, [list(prompt)], 0)

        def decode(self, spec, policy, prompts, seed):
            widths = torch.tensor([len(p) - 1 for p in prompts])
            tokens = torch.zeros(len(prompts), int(widths.max()), dtype=torch.long)
            for r, p in enumerate(prompts):
                tokens[r, : len(p) - 1] = torch.tensor(p[:-1])
            t0 = time.perf_counter()
            with torch.inference_mode():
                RaggedKVCache(target, len(prompts)).prefill(tokens, widths, capture=capture,
                                                            max_padding=dict(spec.options)["max_padding"])
            seconds = time.perf_counter() - t0
            return GenerationResult([p[:-1] for p in prompts], [], seconds, seconds, [False] * len(prompts))

    torch.set_num_threads(args.threads)
    target, tokenizer = load_target(args.target)
    items = load_items(tokenizer, domains, args.data_dir, args.limit, seed=0, skip=args.skip)
    capture = (len(decoder_stack(target).layers),)         # the EAGLE-1 head's feature layer
    runs = [RunSpec("padded", "prefill", options=(("max_padding", 1.0),)),
            RunSpec("grouped", "prefill", options=(("max_padding", args.max_padding),))]
    result = run_ab(items, args.out, Prefill(), runs, one_int(args, "bsz"), args.repeats,
                    {"grouped_over_padded": ("grouped", "padded")}, not args.no_progress)
    result["max_padding"] = args.max_padding
    return report_ab(result, "bench_prefill", "prefill speed grouped / padded", args.out, args.json)


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_prefill"))

"""Engine benchmark: our decode loop against transformers' own, on the same prompts, in one run.

    python recipes/bench_engine.py --json results/bench_engine.json

Methods (batch size 1, greedy, same prompts, same max_new_tokens):
    hf_generate       model.generate(do_sample=False)
    ar                specsel engine, autoregressive arm
    ngram             specsel engine, n-gram drafter, gamma 4
    hf_prompt_lookup  model.generate(prompt_lookup_num_tokens=4)
Each prompt runs every method back to back (order rotated per prompt, after a warm-up: the one
executor, specsel.study.ab), so slow drift of the machine hits all methods alike; each ratio is taken
prompt by prompt and summarised as the median with its spread. Every method's tokens must equal
hf_generate's (greedy is lossless); the script says so and exits non-zero otherwise.
"""
from __future__ import annotations

import sys

from specsel.flags import add_flags, flag_parser, parse_flags, run_command

METHODS = ("hf_generate", "ar", "ngram", "hf_prompt_lookup")


def parse_args(argv=None):
    ap = flag_parser("bench_engine", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "limit", "max_new_tokens", "gamma", "repeats", "threads", "out",
              "json", "no_progress", domains="humaneval", limit=8, max_new_tokens=128, out="results/bench_engine")
    ap.add_argument("--ngram-max-n", type=int, default=3, help="longest suffix the n-gram drafter matches")
    ap.add_argument("--ngram-min-n", type=int, default=2, help="shortest suffix the n-gram drafter matches")
    args = parse_flags(ap, argv)
    from specsel.data import domains_argument
    args.domain_names = domains_argument(ap, args.domains)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import time

    import torch

    from drafters import NgramDrafter
    from specsel import Arm, SpecEngine
    from specsel.engine import GenerationResult
    from specsel.modeling.target import load_target
    from specsel.study import RunSpec, load_items
    from specsel.study.ab import report_ab, run_ab
    from specsel.study.executor import Decoder

    class Methods(Decoder):
        """transformers' generate (greedy, prompt lookup) and our engine, one prompt at a time."""

        def warm_up(self, prompt):
            for spec in runs:
                self.decode(spec, None, [list(prompt)], 0)

        def decode(self, spec, policy, prompts, seed):
            if spec.kind == "engine":
                return engine.generate(prompts, Arm.parse(spec.arm), max_new_tokens=args.max_new_tokens)
            t0 = time.perf_counter()
            ids = torch.tensor(prompts, device=model.device)
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens,
                                 do_sample=False, eos_token_id=eos, pad_token_id=tokenizer.pad_token_id,
                                 **dict(spec.options))
            tokens = out[0, ids.shape[1]:].tolist()
            return GenerationResult([tokens], [], time.perf_counter() - t0, 0.0, [bool(tokens) and tokens[-1] == eos])

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_target(args.target)
    eos = tokenizer.eos_token_id
    engine = SpecEngine(model, {"ngram": NgramDrafter(args.ngram_max_n, args.ngram_min_n)}, eos_token_id=eos)
    items = load_items(tokenizer, args.domain_names, args.data_dir, args.limit, seed=0)
    runs = [RunSpec("hf_generate", "hf"), RunSpec("ar", "engine", arm="autoregressive"),
            RunSpec("ngram", "engine", arm=f"ngram@{args.gamma}"),
            RunSpec("hf_prompt_lookup", "hf", options=(("prompt_lookup_num_tokens", args.gamma),))]
    result = run_ab(items, args.out, Methods(), runs, 1, args.repeats,
                    {"ar_vs_hf": ("ar", "hf_generate"), "ngram_vs_hf_prompt_lookup": ("ngram", "hf_prompt_lookup"),
                     "ngram_vs_ar": ("ngram", "ar")}, not args.no_progress)
    result.update(target=args.target, gamma=args.gamma, ngram_max_n=args.ngram_max_n, ngram_min_n=args.ngram_min_n,
                  threads=torch.get_num_threads(),
                  tokens_per_s={r["run"]: r["tokens_per_s"] for r in result["rows"]})
    for run, tps in result["tokens_per_s"].items():
        print(f"{run:<18}{tps:>10.2f} tokens/s")
    return report_ab(result, "bench_engine", "tokens/s ratio", args.out, args.json)


if __name__ == "__main__":
    sys.exit(run_command(main, "bench_engine"))

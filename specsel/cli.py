"""The `specsel` command line.

    specsel generate --prompt "Write a Python function that reverses a list." --drafter ngram --gamma 4
"""
from __future__ import annotations

import argparse
import sys


def _generate(args) -> int:
    import torch

    from drafters import NgramDrafter
    from evaluators.metrics import summarize
    from specsel import Arm, Sampling, SpecEngine
    from specsel.data import Query, encode_prompts
    from specsel.target import load_target

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_target(args.target)
    prompt = encode_prompts(tokenizer, [Query("user", "cli", [{"role": "user", "content": args.prompt}], "")])[0]
    pool = {"ngram": NgramDrafter()}
    if args.drafter not in (None, "none") and args.drafter not in pool:
        print(f"specsel: unknown drafter '{args.drafter}'; available here: {', '.join(pool)}, none", file=sys.stderr)
        return 2
    engine = SpecEngine(model, pool, eos_token_id=tokenizer.eos_token_id)
    arm = Arm.autoregressive() if args.drafter in (None, "none") else Arm(args.drafter, args.gamma)
    sampling = None if args.temperature == 0 else Sampling(args.temperature, args.top_p)
    runs = {"autoregressive": Arm.autoregressive(), str(arm): arm} if args.compare else {str(arm): arm}
    results = {name: engine.generate([prompt], a, max_new_tokens=args.max_new_tokens, sampling=sampling,
                                     seed=args.seed, progress=True) for name, a in runs.items()}
    result = results[str(arm)]
    print(tokenizer.decode(result.tokens[0], skip_special_tokens=True))
    print(f"\n{'round':>5} {'arm':>10} {'drafted':>8} {'accepted':>9} {'committed':>10} {'draft ms':>9} {'verify ms':>10}")
    for r in result.records:
        print(f"{r.round:>5} {str(arm):>10} {r.drafted:>8} {r.accepted:>9} {r.committed:>10} "
              f"{r.draft_s * 1e3:>9.1f} {r.verify_s * 1e3:>10.1f}")
    for name, res in results.items():
        s = summarize(res.records, res.wall_s, res.new_tokens)
        per_pos = ", ".join(f"{x:.2f}" for x in s["acceptance_per_pos"]) or "-"
        print(f"\n{name}: {res.new_tokens} tokens in {s['rounds']} target forwards, "
              f"mean_acceptance_length {s['mean_acceptance_length']:.2f}, "
              f"tokens_per_s {s['tokens_per_s']:.1f}, acceptance_per_pos [{per_pos}]")
    if args.compare:
        ar, sp = results["autoregressive"], result
        same = "identical" if ar.tokens == sp.tokens else "DIFFERENT"
        print(f"speedup over autoregressive: {(sp.new_tokens / sp.wall_s) / (ar.new_tokens / ar.wall_s):.2f}x "
              f"(outputs {same})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from specsel.target import EMBEDDED_DEFAULT

    parser = argparse.ArgumentParser(prog="specsel", description="Speculative decoding that picks its own drafter.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate for one prompt and print per-round stats")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--target", default=EMBEDDED_DEFAULT, help="local dir, hub id, or the embedded default")
    gen.add_argument("--drafter", default="ngram", help="drafter name, or 'none' for plain autoregressive")
    gen.add_argument("--gamma", type=int, default=4, help="speculation length (draft tokens per round)")
    gen.add_argument("--max-new-tokens", type=int, default=96)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--threads", type=int, default=None)
    gen.add_argument("--compare", action="store_true", help="also run plain autoregressive decoding and report the speedup")
    gen.set_defaults(func=_generate)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:     # our errors are one line that names the fix
        print(f"specsel: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

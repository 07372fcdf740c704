"""The `specsel` command line.

    specsel generate --prompt "Write a Python function that reverses a list." --drafter ngram --gamma 4
    specsel eval --data-dir ../shared/data --domains math,humaneval,medqa --limit 3 --out results/
    specsel drafters
    specsel replay --records results/queries.jsonl --gammas 1,2,4
    specsel load --data-dir ../shared/data --concurrency 1,2,4,8,16 --out results/load
    specsel router collect --data-dir ../shared/data --split train --limit 60 --out runs/router_train
    specsel router fit --records runs/router_train/queries.jsonl --out router/
"""
from __future__ import annotations

import argparse
import sys


def _generate(args) -> int:
    from specsel.options import unused_sampling
    from specsel.study.pool import check_pool_file
    check_pool_file(args.pool)                  # the numbers were checked in main (specsel.options)
    notice = unused_sampling(args)
    if notice:
        print(f"specsel generate: warning: {notice}", file=sys.stderr)
    import torch

    from evaluators.metrics import summarize
    from specsel import Arm, Sampling, SpecEngine
    from specsel.data import Query, encode_prompts
    from specsel.modeling.target import load_target
    from specsel.study import load_pool

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.pool is None and args.drafter not in (None, "none"):   # fail before the model loads
        from specsel.study import known_pool_names
        if args.drafter not in known_pool_names():
            raise ValueError(f"unknown drafter '{args.drafter}'; the default pool has: "
                             f"{', '.join(known_pool_names())}, or none")
    model, tokenizer = load_target(args.target, dtype=args.dtype, device=args.device, device_map=args.device_map)
    prompt = encode_prompts(tokenizer, [Query("user", "cli", [{"role": "user", "content": args.prompt}], "")])[0]
    pool = {} if args.drafter in (None, "none") else load_pool(model, [args.drafter], args.pool)
    engine = SpecEngine(model, pool, eos_token_id=tokenizer.eos_token_id)
    arm = Arm.autoregressive() if args.drafter in (None, "none") else Arm(args.drafter, args.gamma)
    sampling = None if args.temperature == 0 else Sampling(args.temperature, args.top_p, args.top_k, args.min_p)
    runs = {"autoregressive": Arm.autoregressive(), str(arm): arm} if args.compare else {str(arm): arm}
    results = {name: engine.generate([prompt], a, max_new_tokens=args.max_new_tokens, sampling=sampling,
                                     seed=args.seed, progress=True) for name, a in runs.items()}
    result = results[str(arm)]
    print(tokenizer.decode(result.tokens[0], skip_special_tokens=True))
    print(f"\n{'round':>5} {'arm':>10} {'drafted':>8} {'accepted':>9} {'committed':>10} {'draft ms':>9} "
          f"{'verify ms':>10}")
    for r in result.records:
        print(f"{r.round:>5} {str(Arm(r.drafter, r.gamma)):>10} {r.drafted:>8} {r.accepted:>9} {r.committed:>10} "
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
    from specsel.flags import add_flags, flag_parser

    parser = flag_parser("specsel", "Speculative decoding that picks its own drafter.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate for one prompt and print per-round stats")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--drafter", default="ngram", help="drafter name, or 'none' for plain autoregressive")
    add_flags(gen, "target", "gamma", "max_new_tokens", "temperature", "top_p", "top_k", "min_p", "seed", "dtype",
              "device", "device_map", "threads", "pool", max_new_tokens=96)
    gen.add_argument("--compare", action="store_true",
                     help="also run plain autoregressive decoding and report the speedup")
    gen.set_defaults(func=_generate)

    from specsel.study import add_eval_arguments
    ev = sub.add_parser("eval", help="the domain study: every selection rule on one mixed stream "
                        "(= recipes/domain_eval.py)")
    add_eval_arguments(ev)
    ev.set_defaults(func=_eval)

    from specsel.cli.load import add_load_arguments
    ld = sub.add_parser("load", help="drafter selection under load: continuous batching at every concurrency / "
                        "arrival rate, every policy on the same requests")
    add_load_arguments(ld)
    ld.set_defaults(func=_load)

    from specsel.cli.serve import add_serve_arguments
    sv = sub.add_parser("serve", help="an OpenAI-compatible server that chooses drafters per request as it serves")
    add_serve_arguments(sv)
    sv.set_defaults(func=_serve)

    dr = sub.add_parser("drafters", help="list the drafter pool")
    add_flags(dr, "pool", "target")
    dr.set_defaults(func=_drafters)

    rp = sub.add_parser("replay", help="re-run learners offline on stored full-information records")
    add_flags(rp, "records", "bsz", "drafters", "gammas", "learners", "seed", "score_every", bsz=None, gammas=None,
              learners=None, seed=None, score_every=None, required=("records",))   # None: the records' own
    rp.add_argument("--run", default=None, help="which full-information run of the file (default: the first)")
    rp.set_defaults(func=_replay)

    ro = sub.add_parser("router", help="a prompt router: collect full-information records, fit a router on them")
    rsub = ro.add_subparsers(dest="router_command", required=True)
    co = rsub.add_parser("collect", help="decode only a study's full-information run (the records a router is "
                         "fitted on); the eval flags, e.g. --split train")
    add_eval_arguments(co)
    co.set_defaults(func=_router_collect)
    fit = rsub.add_parser("fit", help="fit a router (scikit-learn, saved without pickle) on full-information records")
    fit.add_argument("--records", action="append", required=True,    # several files: not the shared --records
                     help="queries.jsonl of `specsel router collect` or `specsel eval` (repeatable)")
    add_flags(fit, "out", required=("out",))
    add_flags(fit, "data_dir", "bsz", "folds", "seed", data_dir=None, bsz=None)
    fit.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    fit.set_defaults(func=_router_fit)
    return parser


def _serve(args) -> int:
    from specsel.cli.serve import serve_command
    return serve_command(args)


def _load(args) -> int:
    from specsel.cli.load import load_command
    return load_command(args)


def _router_collect(args) -> int:
    from specsel.study import eval_command
    return eval_command(args, "specsel router collect", fullinfo_only=True)


def _router_fit(args) -> int:
    from specsel.flags import one_int
    from specsel.study.router_fit import fit_router

    fit_router(args.records, args.out, args.data_dir, one_int(args, "bsz"), folds=args.folds, C=args.C, seed=args.seed,
               command="specsel " + " ".join(sys.argv[1:]))
    return 0


def _eval(args) -> int:
    from specsel.study import eval_command
    return eval_command(args, "specsel eval")


def _drafters(args) -> int:
    from drafters import registered
    from drafters.pool import pool_names

    if args.pool is None:
        from specsel.study import known_pool_names
        default = pool_names()
        print("default pool (drafters.pool; build with default_pool(target, names)):")
        for name in known_pool_names():
            print(f"  {name}" + ("" if name in default else "   (optional: pass it in --drafters)"))
        print("drafter families (drafters.build): " + ", ".join(registered()))
        return 0
    from specsel.modeling.target import load_target
    from specsel.study import load_pool
    from specsel.study.pool import check_pool_file
    check_pool_file(args.pool)
    model, _ = load_target(args.target)
    pool = load_pool(model, None, args.pool)
    print(f"pool from {args.pool} for {args.target}:")
    for name, d in pool.items():
        print(f"  {name:<24} {type(d).__name__}")
    return 0


def _replay(args) -> int:
    from specsel.cli.replay import replay_command
    return replay_command(args)


def _command(args) -> str:
    """The command as typed: "specsel generate", "specsel router fit"."""
    return " ".join(["specsel", args.command] + ([args.router_command] if args.command == "router" else []))


def main(argv=None) -> int:
    from specsel.flags import read_flags

    args = build_parser().parse_args(argv)
    try:
        read_flags(args)                     # every number and choice, one place for all commands
        return args.func(args)
    except KeyboardInterrupt:                # Ctrl-C: one line, the shell's status for SIGINT
        print(f"\n{_command(args)}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:     # our errors are one line that names the fix
        text = str(exc).strip()
        print(f"{_command(args)}: error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

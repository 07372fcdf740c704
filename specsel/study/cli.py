"""The study's command line (``specsel eval``, ``recipes/domain_eval.py``): flags, loading the
target, the pool and the data, and one-line errors."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from specsel.data.user_domain import resolve_domains
from specsel.flags import add_flags, flag_parser, read_flags
from specsel.options import unused_sampling
from specsel.study.config import StudyError, add_config_arguments, config_from_args, parse_csv, warn_stderr
from specsel.study.items import encode_items, load_stream
from specsel.study.pool import known_pool_names, load_pool, pool_weights
from specsel.study.ranks import join, launched_ranks, leave
from specsel.study.routing import load_study_router, router_folder
from specsel.study.runner import run_study
from specsel.study.store import check_out

__all__ = ["add_eval_arguments", "config_from_args", "run_eval", "eval_command", "main"]


def add_eval_arguments(ap: argparse.ArgumentParser) -> None:
    """The eval flags (specsel.flags): what to load (target, data, pool), the StudyConfig flags, the output."""
    add_flags(ap, "target", "dtype", "device", "device_map", "data_dir", "domains", "limit", "skip", "split", "pool",
              "drafters")
    add_config_arguments(ap, ["settings", "learners", "gamma", "gammas", "bsz", "max_new_tokens", "temperature",
                              "top_p", "top_k", "min_p", "seed", "fixed_candidates", "score_every", "repeats",
                              "joint_hedgespec", "router"])
    add_flags(ap, "out", "resume", "threads", "no_progress")


def run_eval(args, fullinfo_only: bool = False, warn: Callable[[str], None] = warn_stderr,
             command: str | None = None) -> dict:
    """The eval command: load the target, the pool and the data, then run_study (only its
    full-information run with `fullinfo_only`: `specsel router collect`). Every option and the
    output folder are checked before the model loads; `warn` gets one-line notices."""
    ranks = launched_ranks()                    # torchrun / accelerate launch: this process's share of the batches
    if not ranks.leader:
        warn = _quiet                           # rank 0 says it once
    read_flags(args, StudyError)                # every number and --dtype, as every command checks them
    cfg = config_from_args(args)
    notice = unused_sampling(args)
    if notice:
        warn(notice)
    names = parse_csv(args.drafters) if args.drafters is not None else None
    if names is not None and not names:
        raise StudyError("--drafters is empty; name at least one drafter, or leave it out for the whole pool")
    check_out(args.out, args.resume, lock=ranks.leader)
    router = router_folder(cfg.router, args.target, args.pool) if cfg.router else None
    if router is not None:
        load_study_router(router)               # a damaged router is refused now, not after the load
    domains = resolve_domains(args.domains)     # registers NAME=PATH user domains; fails before the model loads
    if not domains:
        raise StudyError("--domains is empty; e.g. --domains math,humaneval,medqa")
    import torch

    from specsel.modeling.target import load_target
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pool is None and names is not None:    # a cheap check before the model loads
        known = known_pool_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise StudyError(f"unknown drafter(s) {', '.join(unknown)}; the default pool has: {', '.join(known)}")
    stream = load_stream(domains, args.data_dir, args.limit, args.seed, skip=args.skip, split=args.split, warn=warn)
    device = join(ranks, args.device)
    target, tokenizer = load_target(args.target, dtype=args.dtype, device=device, device_map=args.device_map)
    items = encode_items(tokenizer, stream)
    pool = load_pool(target, names, args.pool)
    data = {"data_dir": args.data_dir, "domains": args.domains, "split": args.split, "skip": args.skip,
            "limit": args.limit}
    try:
        return run_study(target, pool, items, cfg, args.out, resume=args.resume, eos_token_id=tokenizer.eos_token_id,
                         progress=not args.no_progress, weights=pool_weights(list(pool), args.pool), router=router,
                         data=data, fullinfo_only=fullinfo_only, warn=warn, ranks=ranks, command=command)
    finally:
        leave(ranks)


def _quiet(message: str) -> None:
    pass


def main(argv=None, prog: str = "domain_eval") -> int:
    ap = flag_parser(prog, "Every selection rule on one mixed stream of domain prompts.")
    add_eval_arguments(ap)
    args = ap.parse_args(argv)
    return eval_command(args, prog)


def eval_command(args, prog: str = "specsel eval", fullinfo_only: bool = False) -> int:
    try:
        run_eval(args, fullinfo_only, warn=lambda message: print(f"{prog}: warning: {message}", file=sys.stderr),
                 command=" ".join([prog, *sys.argv[len(prog.split()):]]))
    except KeyboardInterrupt:
        results = Path(args.out) / "queries.jsonl"
        if results.is_file() and results.stat().st_size > 0:
            print(f"\n{prog}: interrupted; every finished batch is saved in {results}: "
                  f"rerun the same command with --resume to continue", file=sys.stderr)
        else:
            print(f"\n{prog}: interrupted before any batch finished; nothing was saved", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:   # StudyError, DataError, TargetError, DrafterError: one line
        print(f"{prog}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    return 0

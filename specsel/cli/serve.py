"""`specsel serve`: an OpenAI-compatible server that chooses drafters per request while it serves.

    specsel serve --policy hedgespec --max-batch 16 --port 8000 --state state.json

The engine decodes every running request in one batch (continuous batching: a request takes a
row as soon as one is free); the policy (the joint HedgeSpec by default, over every pool drafter x
--gammas and plain decoding) chooses each row's arm every round and learns as it serves. What it
learnt is saved in --state periodically and at shutdown, and restored at start. SIGTERM (or
Ctrl-C) stops taking requests, lets the running ones finish (up to --drain seconds) and saves.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specsel.flags import add_flags

LEARNERS = ("hedgespec", "ucbspec", "exp3spec", "epsilon_greedy", "round_robin")


def add_serve_arguments(ap: argparse.ArgumentParser) -> None:
    add_flags(ap, "target", "dtype", "device", "pool", "drafters", "gammas", "max_batch", "temperature", "top_p",
              "top_k", "min_p", "seed", "threads", max_batch=16)
    ap.add_argument("--policy", default="hedgespec", help=f"what chooses the arms: {', '.join(LEARNERS)}, "
                    "dynamic_gamma, a fixed arm drafter@gamma, or autoregressive")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=8000, help="port to listen on")
    ap.add_argument("--state", default=None, help="JSON file the policy's learnt state is kept in (restored at "
                    "start, saved every --state-every seconds and at shutdown)")
    ap.add_argument("--state-every", type=float, default=60.0, help="seconds between saves of --state")
    ap.add_argument("--drain", type=float, default=30.0, help="at shutdown, seconds the running requests get to "
                    "finish")
    ap.add_argument("--max-queue", type=int, default=256, help="requests that may wait for a row; more get 429")
    ap.add_argument("--max-tokens", type=int, default=256, help="a request's token budget when it gives none")
    ap.add_argument("--served-model-name", default=None, help="the model id clients use (default: --target)")


def check_policy(name: str, drafters: list[str] | None) -> None:
    """A one-line error for a policy name serve cannot build (before the model loads)."""
    from specsel.core.arms import Arm
    if name in LEARNERS or name in ("dynamic_gamma", "autoregressive"):
        return
    try:
        arm = Arm.parse(name)
    except (ValueError, TypeError):
        raise ValueError(f"--policy {name!r}: choose {', '.join(LEARNERS)}, dynamic_gamma, autoregressive, or a "
                         "fixed arm drafter@gamma (e.g. ngram@4)") from None
    if drafters is not None and arm.drafter not in drafters:
        raise ValueError(f"--policy {name}: drafter {arm.drafter!r} is not in --drafters ({', '.join(drafters)})")


def build_policy(name: str, pool: dict, gammas: list[int], seed: int):
    """The server's policy: a learner over the joint arms (every drafter x gamma, and plain
    decoding), dynamic_gamma on the first drafter, or one arm."""
    from specsel.core.arms import Arm
    from specsel.core.drafting import draft_calls
    from specsel.study.executor import RunSpec
    from specsel.study.policies import PolicyFactory
    drafters = list(pool)
    joint = tuple(f"{d}@{g}" for d in drafters for g in sorted(set(gammas), reverse=True)) + ("autoregressive",)
    if name == "autoregressive" or (name in LEARNERS + ("dynamic_gamma",) and not drafters):
        return Arm.autoregressive()
    if name == "hedgespec":
        spec = RunSpec("serve/hedgespec", "factored", setting="joint", learner=name, arms=joint, gammas=tuple(gammas))
    elif name in LEARNERS:
        spec = RunSpec(f"serve/{name}", "learner", setting="joint", learner=name, arms=joint, gammas=tuple(gammas))
    elif name == "dynamic_gamma":
        spec = RunSpec("serve/dynamic_gamma", "dynamic_gamma", arm=drafters[0], setting="joint",
                       options=(("max_gamma", max(gammas)),))
    else:
        arm = Arm.parse(name)
        if arm.drafter not in pool:
            raise ValueError(f"--policy {name}: no drafter {arm.drafter!r} in the pool ({', '.join(drafters)})")
        return arm
    return PolicyFactory(drafters, draft_calls(pool), seed).build(spec)


def _run(service, server, where: str) -> None:
    """uvicorn on a thread, the engine on this (the main) thread, where torch decodes faster than
    on another thread. SIGTERM or Ctrl-C: uvicorn stops taking connections and waits up to --drain
    seconds for the running responses, which the engine keeps decoding; once uvicorn has stopped
    (for any reason) the stream closes, and the engine ends what is left (or cuts it) and returns.
    A second Ctrl-C closes the connections at once."""
    import signal
    import threading
    import time

    web = threading.Thread(target=server.run, name="specsel-http", daemon=True)

    def on_signal(sig, frame):
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    def close_when_web_ends():
        web.join()
        service.shut()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    web.start()
    while not server.started:
        if not web.is_alive():
            raise OSError(f"could not listen on {where} (uvicorn's message is above); choose another --host or --port")
        time.sleep(0.05)
    threading.Thread(target=close_when_web_ends, name="specsel-shutdown", daemon=True).start()
    service.decode()                    # until the stream is closed and drained (or the engine fails)
    while web.is_alive():               # a failed engine: the server answers 503 until it is stopped
        web.join(0.5)


def serve_command(args) -> int:
    from specsel.options import parse_csv, parse_ints
    drafters = parse_csv(args.drafters) if args.drafters else None
    check_policy(args.policy, drafters)
    gammas = parse_ints(args.gammas, "--gammas") if isinstance(args.gammas, str) else list(args.gammas)
    if args.max_queue < 0 or args.state_every <= 0 or args.drain < 0 or args.max_tokens < 1:
        raise ValueError("--max-queue and --drain must be >= 0, --state-every > 0 and --max-tokens >= 1")
    from specsel.study.pool import check_pool_file
    check_pool_file(args.pool)
    import torch
    import uvicorn

    from specsel import SpecEngine
    from specsel.core.sampling import Sampling
    from specsel.modeling.target import load_target
    from specsel.serve.app import create_app
    from specsel.serve.service import ServeConfig, Service
    from specsel.serve.state import ServerState
    from specsel.study import load_pool

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_target(args.target, dtype=args.dtype, device=args.device)
    pool = load_pool(model, drafters, args.pool)
    engine = SpecEngine(model, pool, eos_token_id=tokenizer.eos_token_id)
    policy = build_policy(args.policy, pool, gammas, args.seed)
    expect = ServerState(str(args.target), sorted(pool), args.policy, args.seed)
    state = ServerState.load(Path(args.state), expect) if args.state else expect
    sampling = None if args.temperature == 0 else Sampling(args.temperature, args.top_p, args.top_k, args.min_p)
    cfg = ServeConfig(args.policy, args.max_batch, args.max_queue, sampling, args.seed,
                      Path(args.state) if args.state else None, args.state_every, args.drain)
    service = Service(engine, tokenizer, policy, cfg, state)
    service.start(thread=False)
    app = create_app(service, args.served_model_name or str(args.target), args.max_tokens)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           timeout_graceful_shutdown=int(args.drain) or None))
    print(f"specsel serve: {args.policy} over {', '.join(pool) or 'no drafters'} on http://{args.host}:{args.port}/v1 "
          f"({state.queries} requests learnt from before)", file=sys.stderr, flush=True)
    try:
        _run(service, server, f"{args.host}:{args.port}")
    finally:
        service.stop()
        print(f"specsel serve: stopped; {state.queries} requests learnt from"
              + (f", state saved to {args.state}" if args.state else ""), file=sys.stderr, flush=True)
    return 0

"""Choose the EAGLE-3 draft vocabulary's size by measurement: draft cost against acceptance.

    python recipes/draft_vocab.py --data-dir ../shared/data --head drafters/weights/smollm2-135m-instruct/eagle3 \
        --sizes 1024,2048,4096,8192 --json results/draft_vocab.json

Two measurements per size V (V no larger than the head's own draft vocabulary):
  coverage   share of the answer tokens of the corpus' held-out shards (training prompts the
             head never trained on; recipes/self_distill.py) among the V most frequent answer
             tokens of the training part: a token outside is never drafted, so this bounds
             the acceptance of every draft position (also given for V above the head's)
  decoding   the head restricted to its V most frequent draft tokens (its own LM-head rows,
             drafters.training.eagle3.restrict_vocabulary) decodes tuning queries (eval
             prompts --skip.., default 30-34 of each domain: never used by the study or the
             benchmark) greedily at gamma 4, batch 1: MAT, draft time per drafted token, tokens/s
Greedy outputs are checked against autoregressive decoding (lossless). Smaller V makes each
draft step cheaper (the projection reads V x H weights) and drafts fewer tokens right.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from drafters.eagle import EagleDrafter
from drafters.eagle_head import load_eagle_head
from drafters.training.corpus import corpus_dir, corpus_split
from drafters.training.eagle import frozen_target, work_dir
from drafters.training.eagle3 import coverage, restrict_vocabulary, token_counts
from drafters.training.selfdistill import DISTILL_DOMAINS
from specsel import Arm, SpecEngine
from specsel.flags import add_flags, flag_parser, parse_flags, run_command
from specsel.study.heldout import heldout_prompts


def parse_args(argv=None):
    ap = flag_parser("draft_vocab", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "prompts", "skip", "max_new_tokens", "self_distill_tokens", "seed",
              "work", "threads", "json", prompts=5, skip=30, required=("json",))
    ap.add_argument("--head", required=True, help="an EAGLE-3 head directory (recipes/train_eagle.py --out)")
    ap.add_argument("--sizes", default="1024,2048,4096,8192")
    ap.add_argument("--coverage-sizes", default="512,1024,2048,4096,8192,16384,32768")
    return parse_flags(ap, argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    target, tokenizer = frozen_target(args.target, args.threads)
    V = target.config.vocab_size
    root = corpus_dir(work_dir(args.work, args.target), args.target, args.seed, args.self_distill_tokens)
    train_docs, held_docs = [], []
    for d in DISTILL_DOMAINS:
        if (root / d).exists():
            (_, docs, plens, _), (_, hdocs, hplens, _) = corpus_split(root, d)
            train_docs += [doc[p:] for doc, p in zip(docs, plens)]
            held_docs += [doc[p:] for doc, p in zip(hdocs, hplens)]
    if not held_docs:
        raise ValueError(f"no held-out corpus shard under {root}: run recipes/self_distill.py first")
    counts = token_counts(train_docs, V)
    cover = {int(n): round(coverage(held_docs, [0] * len(held_docs), counts.topk(int(n)).indices, V), 4)
             for n in args.coverage_sizes.split(",")}
    print("held-out answer-token coverage by size:", cover, flush=True)

    head = load_eagle_head(args.head, target)
    prompts = [p for d in args.domains.split(",") for p in
               heldout_prompts(tokenizer, d, args.data_dir, args.prompts, args.skip)]
    sizes = [int(n) for n in args.sizes.split(",") if int(n) <= head.draft_vocab_size]
    pool = {f"v{n}": EagleDrafter(target, restrict_vocabulary(head, n, counts) if n < head.draft_vocab_size else head,
                                  name=f"v{n}") for n in sizes}
    engine = SpecEngine(target, pool, eos_token_id=tokenizer.eos_token_id)
    engine.generate(prompts[:1], Arm.autoregressive(), max_new_tokens=4)              # warm-up
    runs = {name: {"tokens": 0, "rounds": 0, "seconds": 0.0, "draft_s": 0.0, "drafted": 0} for name in
            ["autoregressive", *pool]}
    lossless = True
    for k, prompt in enumerate(prompts):
        names = list(runs)
        names = names[k % len(names):] + names[: k % len(names)]        # rotated: drift spreads evenly
        outs = {}
        for name in names:
            arm = Arm.autoregressive() if name == "autoregressive" else Arm(name, 4)
            t0 = time.perf_counter()
            res = engine.generate([prompt], arm, max_new_tokens=args.max_new_tokens)
            r = runs[name]
            r["seconds"] += time.perf_counter() - t0
            r["tokens"] += len(res.tokens[0])
            r["rounds"] += len(res.records)
            r["draft_s"] += sum(x.draft_s for x in res.records)
            r["drafted"] += sum(x.drafted for x in res.records)
            outs[name] = res.tokens[0]
        lossless &= all(o == outs["autoregressive"] for o in outs.values())
    ar_tps = runs["autoregressive"]["tokens"] / runs["autoregressive"]["seconds"]
    table = []
    for n in sizes:
        r = runs[f"v{n}"]
        table.append({"size": n, "coverage": cover.get(n), "mat": round(r["tokens"] / r["rounds"], 3),
                      "draft_ms": round(1000 * r["draft_s"] / max(r["drafted"], 1), 2),
                      "tokens_per_s": round(r["tokens"] / r["seconds"], 2),
                      "speedup": round(r["tokens"] / r["seconds"] / ar_tps, 3)})
        print(json.dumps(table[-1]), flush=True)
    last = args.skip + args.prompts - 1
    report = {"head": args.head, "domains": args.domains, "prompts": f"eval {args.skip}-{last} per domain",
              "threads": torch.get_num_threads(), "coverage": cover, "decoding": table, "lossless": lossless,
              "command": "python recipes/draft_vocab.py " + " ".join(sys.argv[1:] if argv is None else argv)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if lossless else 1


if __name__ == "__main__":
    sys.exit(run_command(main, "draft_vocab"))

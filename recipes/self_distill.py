"""Generate the self-distillation corpus: the target's own greedy answers to training prompts.

    nice -n 19 python recipes/self_distill.py --data-dir ../shared/data --prompts 600 --threads 1

Every domain with a training split (MATH train, GSM8K train (from the hub: shared/data has only
its test file), MBPP posed as HumanEval poses problems, Code Alpaca [300:], MedQA test records
300+, PubMedQA's non-test questions, Spider questions on databases the evaluation part never
uses, CNN/DailyMail train articles) gives its
first --prompts prompts of a seeded order (rounded up to whole chunks of 8 batches); never an
evaluation split. Batched greedy decoding (left-padded, KV cache) that keeps the target's
hidden states an EAGLE-3 head trains on (low, mid, high and final-norm layers) from its own
forwards, so training needs no second pass over the text; one shard per batch under
<work>/selfdistill/<target>-s<seed>-n<tokens>/, written atomically: rerun the
same command after a kill and it resumes. Domains take turns chunk by chunk, so a corpus
stopped early still covers every domain. recipes/train_eagle.py (--version 3) and
recipes/train_eagle3_expert.py train on it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from drafters.training.corpus import corpus_dir as _corpus_dir
from drafters.training.eagle import frozen_target, work_dir
from drafters.training.eagle3 import feature_layers
from drafters.training.selfdistill import DISTILL_DOMAINS, CorpusOptions, generate_corpus, greedy_with_features
from specsel.flags import add_flags, flag_parser, parse_flags, run_command


def corpus_dir(work, target: str, seed: int, max_new_tokens: int) -> Path:
    return _corpus_dir(work_dir(work, target), target, seed, max_new_tokens)


def parse_args(argv=None):
    ap = flag_parser("self_distill", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "prompts", "max_new_tokens", "batch_size", "seed", "work", "threads",
              domains=",".join(DISTILL_DOMAINS), prompts=600, max_new_tokens=128, batch_size=16)
    args = parse_flags(ap, argv)
    args.domain_names = [d for d in args.domains.split(",") if d]
    bad = [d for d in args.domain_names if d not in DISTILL_DOMAINS]
    if bad:
        ap.error(f"--domains: {', '.join(bad)} has no training split to self-distill; use some of "
                 f"{','.join(DISTILL_DOMAINS)}")
    if args.prompts < 1 or args.batch_size < 1 or args.max_new_tokens < 1:
        ap.error("--prompts, --batch-size and --max-new-tokens must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    target, tokenizer = frozen_target(args.target, args.threads)
    root = corpus_dir(args.work, args.target, args.seed, args.max_new_tokens)
    layers = feature_layers(target.config.num_hidden_layers)     # what an EAGLE-3 head trains on
    eos = tokenizer.eos_token_id
    generate = greedy_with_features(target, eos, tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                    else eos, layers)
    options = CorpusOptions(args.max_new_tokens, seed=args.seed, batch_size=args.batch_size, target_name=args.target,
                            layers=layers)
    stats = generate_corpus(tokenizer, generate, args.domain_names, {d: args.prompts for d in args.domain_names},
                            args.data_dir, root, options)
    print(json.dumps({"corpus": str(root), "domains": stats}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, "self_distill"))

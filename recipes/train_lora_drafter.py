"""Train a domain-expert LoRA adapter on a base EAGLE head by distilling the target on domain text.

    python recipes/train_lora_drafter.py --data-dir ../shared/data --domain math \
        --base drafters/weights/smollm2-135m-instruct/eagle \
        --out drafters/weights/smollm2-135m-instruct/lora/math

The adapter (rank --rank on fc and every projection of the decoder layer) is trained with the
same EAGLE-1 loss as the base (drafters/training/eagle.py) on the domain's training split
only: MATH train for math, MBPP for code (humaneval), MedQA test records after the first 300
for medqa; tokens [0, --tokens + --extra-tokens) of that split in the same seeded order as
recipes/train_eagle.py, so the first --tokens reuse its cached features and --extra-tokens
are text the general head never saw. The target's own greedy answers to --self-distill-prompts
training prompts of the domain are added (oversampled); beyond the base head's 300 they are
answers it never saw. Resumable (features and checkpoints under --work).
The model card compares the adapter's held-out greedy MAT at gamma 4 with the base head's on
the first --eval-prompts evaluation prompts of the domain.

Your own data: `--domain support=tickets.jsonl[@N]` (or NAME=hf:..., README "Your own data")
trains the adapter `lora_support` on the file's train part, the records after the first N
(default 300), and measures it on the first --eval-prompts of the eval part. The base head
never saw that text, so nothing is shared with its caches: the adapter trains on tokens
[0, --tokens + --extra-tokens) of the train part and on the target's answers to up to
--self-distill-prompts of its prompts; caches are keyed by the file's hash.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

from drafters.eagle_head import load_eagle_head
from drafters.lora import lora_experts
from drafters.training.eagle import (
    SELF_DISTILL_STYLES,
    EagleLossOptions,
    SelfDistillOptions,
    TokenRange,
    domain_features,
    eagle_loss,
    frozen_target,
    self_distilled_features,
    training_source,
    work_dir,
    write_json,
)
from drafters.training.lora import new_lora
from drafters.training.trainer import TrainOptions, train
from specsel.data import cache_tag, domains_argument, is_user_domain, load_domain
from specsel.flags import add_flags, flag_parser, parse_flags, run_command
from specsel.study.heldout import measure_mat

ADAPTER_NAMES = {"math": "lora_math", "humaneval": "lora_code", "medqa": "lora_medical", "gsm8k": "lora_gsm8k",
                 "sql": "lora_sql", "summarization": "lora_summarization"}


def parse_args(argv=None):
    ap = flag_parser("train_lora_drafter", __doc__)
    add_flags(ap, "target", "data_dir", "domain", "base", "self_distill_prompts", "self_distill_tokens",
              "self_distill_repeat", "seq_len", "rank", "alpha", "steps", "batch_size", "lr", "unroll_weight", "seed",
              "save_every", "out", "work", "eval_prompts", "threads", self_distill_prompts=400, self_distill_repeat=3,
              steps=200, required=("domain", "base", "out"))
    ap.add_argument("--tokens", type=int, default=50_000, help="training tokens shared with the base head's data")
    ap.add_argument("--extra-tokens", type=int, default=25_000, help="further domain tokens the base never saw")
    ap.add_argument("--self-distill-shared", type=int, default=300,
                    help="how many of --self-distill-prompts the base head trained on (train_eagle.py "
                         "--self-distill-prompts): their cached features are reused")
    ap.add_argument("--self-distill-style", default="plain", choices=SELF_DISTILL_STYLES,
                    help="'stub': pose each new (beyond --self-distill-shared) code problem as HumanEval does, "
                         "a signature and docstring (specsel.data.as_function_stub)")
    args = parse_flags(ap, argv)
    args.domain = expert_domain(ap, args.domain)
    return args


def expert_domain(ap: argparse.ArgumentParser, spec: str) -> str:
    """--domain: a built-in domain with an adapter name, or your own data as NAME=PATH (registered here)."""
    if "=" in spec:
        return domains_argument(ap, spec, "--domain", one=True)
    if spec not in ADAPTER_NAMES:
        ap.error(f"argument --domain: invalid choice: {spec!r} (choose from {', '.join(sorted(ADAPTER_NAMES))}, "
                 "or NAME=PATH for your own data)")
    return spec


def base_domains(base: str) -> tuple[str, ...] | None:
    """The domains the base head trained on, from its training.json (None: not recorded)."""
    info = Path(base) / "training.json"
    domains = json.loads(info.read_text()).get("domains") if info.exists() else None
    return tuple(domains) if domains else None


def new_domain_prompts(domain: str, data_dir, base: str) -> int | None:
    """How many training records a domain the base head never trained on has (a user domain, or a
    built-in such as sql); None for one of the base head's domains, which shares its caches. Fails,
    before the target loads, when it has no train part or no eval part (the model card's held-out MAT)."""
    shared = base_domains(base)
    if not is_user_domain(domain) and (shared is None or domain in shared):   # unrecorded: as before
        return None
    load_domain(domain, data_dir, limit=1)
    return len(load_domain(domain, data_dir, split="train"))


def data_plan(args, shared: int, new_prompts: int | None):
    """Token ranges [start, start + n) of the training text and self-distillation chunks (skip, n, style).
    A built-in domain reuses the base head's first --tokens and --self-distill-shared answers, then adds
    more; a user domain shares nothing with the base head: one range and at most its own prompts."""
    if new_prompts is None:
        ranges = ((0, args.tokens), (args.tokens, args.extra_tokens))
        chunks = ((0, shared, "plain"), (shared, args.self_distill_prompts - shared, args.self_distill_style))
    else:
        ranges = ((0, args.tokens + args.extra_tokens),)
        chunks = ((0, min(args.self_distill_prompts, new_prompts), args.self_distill_style),)
    return [r for r in ranges if r[1] > 0], [c for c in chunks if c[1] > 0]


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    if args.self_distill_style != "plain" and args.domain != "humaneval":
        raise ValueError(f"--self-distill-style {args.self_distill_style} is for --domain humaneval only")
    shared = min(args.self_distill_prompts, args.self_distill_shared)
    ranges, chunks = data_plan(args, shared, new_domain_prompts(args.domain, args.data_dir, args.base))
    target, tokenizer = frozen_target(args.target, args.threads)
    work = work_dir(args.work, args.target)
    parts = [domain_features(target, tokenizer, args.domain, args.data_dir, TokenRange(args.seed, start, n),
                             args.seq_len, work, batch_size=8)
             for start, n in ranges]
    for skip, n, style in chunks:       # built-in: the base head's answers, then new ones
        answers = SelfDistillOptions(n, args.self_distill_tokens, seed=args.seed, style=style, skip=skip)
        _, tok_, val_, feat_ = self_distilled_features(target, tokenizer, args.domain, args.data_dir, answers,
                                                       args.seq_len, work)
        r = args.self_distill_repeat
        parts.append((None, tok_.repeat(r, 1), val_.repeat(r, 1), feat_.repeat(r, 1, 1)))
    tokens = torch.cat([p[1] for p in parts])
    valid = torch.cat([p[2] for p in parts])
    features = torch.cat([p[3] for p in parts])
    extract_s = time.perf_counter() - t0

    base = load_eagle_head(args.base, target).float()
    model = new_lora(copy.deepcopy(base), rank=args.rank, alpha=args.alpha, seed=args.seed)
    head = model.base_model.model                     # the head with LoRA layers injected
    target_rows = target.get_output_embeddings().weight.detach()[head.draft_to_target].float()

    def loss_fn(rows, generator):
        return eagle_loss(head, target_rows, tokens[rows], features[rows], valid[rows],
                          EagleLossOptions(unroll_weight=args.unroll_weight), generator=generator)

    name = ADAPTER_NAMES.get(args.domain) or f"lora_{args.domain}"
    options = TrainOptions(args.steps, args.batch_size, args.lr, save_every=args.save_every, seed=args.seed,
                           fingerprint={"tokens": int(valid.sum()), "rank": args.rank, "alpha": args.alpha,
                                        "base": hashlib.sha256((Path(args.base) / "model.safetensors").read_bytes())
                                        .hexdigest()[:16],
                                        "unroll_weight": args.unroll_weight,
                                        "self_distill": [args.self_distill_prompts, args.self_distill_tokens,
                                                         args.self_distill_repeat, args.self_distill_style]})
    summary = train(model, loss_fn, len(tokens), options, work / f"lora-ckpt-{cache_tag(args.domain)}-{args.seed}")
    out = Path(args.out)
    model.save_pretrained(out)

    pool = lora_experts(target, load_eagle_head(args.base, target), {name: out}, base_name="eagle")
    mat = measure_mat(target, tokenizer, pool, [args.domain], args.data_dir, n_prompts=args.eval_prompts,
                      gamma=4, max_new_tokens=64)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    card = {
        "kind": f"LoRA adapter (rank {args.rank}, alpha {args.alpha}) on the base EAGLE head {args.base}",
        "target": args.target, "domain": args.domain, "adapter": name,
        "data": training_source(args.domain) + (f" + the target's own greedy answers to {args.self_distill_prompts} "
                                                "of its prompts" + _style_note(args.self_distill_style, shared)
                                                if args.self_distill_prompts else ""),
        "train_tokens": int(valid.sum()), "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "unroll_weight": args.unroll_weight,
        "seed": args.seed, "train_seconds": summary["seconds"], "feature_seconds": round(extract_s, 1),
        "final": {k: round(v, 4) for k, v in summary["last"].items() if k != "step"},
        "heldout_mat_gamma4": {"base": mat["eagle"][args.domain], "adapter": mat[name][args.domain]},
        "heldout": f"first {args.eval_prompts} eval prompts of {args.domain}, greedy, 64 new tokens",
        "bytes": size,
        "command": "python recipes/train_lora_drafter.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    write_json(out / "training.json", card)
    (out / "README.md").write_text(model_card(card))
    print(json.dumps(card, indent=2))
    return 0


def _style_note(style: str, shared: int) -> str:
    if style == "plain":
        return ""
    which = f"those beyond the first {shared}" if shared else "all"
    return f" ({which} posed as HumanEval-style function stubs)"


def model_card(c: dict) -> str:
    m = c["heldout_mat_gamma4"]
    return f"""# {c['adapter']}: {c['domain']} expert for {c['target']}

{c['kind']}.

- Training data: {c['data']}, {c['train_tokens']} tokens (training split only, never the evaluation prompts)
- Steps: {c['steps']} x {c['batch_size']} rows, lr {c['lr']}, seed {c['seed']}, unrolled-step loss weight {c['unroll_weight']}
- Seconds (2-core CPU): {c['train_seconds']} training; {c['feature_seconds']} for data in this run (target
  features already cached under --work, e.g. by recipes/train_eagle.py, are reused, not recomputed)
- Final loss terms: {c['final']}
- Held-out greedy MAT at gamma 4 ({c['heldout']}): base head {m['base']:.2f}, this adapter {m['adapter']:.2f}
- Size: {c['bytes'] / 1e3:.0f} kB

Reproduce:

    {c['command']}
"""


if __name__ == "__main__":
    sys.exit(run_command(main, "train_lora_drafter"))

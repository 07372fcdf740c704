"""Train a general EAGLE-1 head for a target on this CPU, from teacher-forced target features.

    python recipes/train_eagle.py --data-dir ../shared/data \
        --out drafters/weights/smollm2-135m-instruct/eagle

Data: the training splits only (MATH train, MBPP, MedQA test records after the first 300),
as chat dialogues in the evaluation prompt format, `--tokens-per-domain` tokens of each
(shuffled with --seed), plus the target's own greedy answers to --self-distill-prompts
training prompts per domain (self-distillation: the head learns what it will draft).
Evaluation prompts (MATH-500, HumanEval, MedQA test[:300]) are never seen. Steps:
  1. tokenize; the reduced draft vocabulary = the --draft-vocab most frequent tokens (+ specials)
  2. one target forward per training row -> features (hidden state after the final norm),
     stored as shards under --work (resumable)
  3. train fc + one decoder layer with the EAGLE-1 loss (drafters/training/eagle.py), plus
     the same loss on a second draft step fed the head's own output (--unroll-weight),
     checkpointing every --save-every steps under --work (rerun to resume)
  4. save the head in float16 (config.json + model.safetensors) and a model card with the
     teacher-forced top-1 agreement and the greedy MAT at gamma 4 on held-out eval prompts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from drafters.training.eagle import (
    domain_features,
    draft_vocabulary,
    eagle_loss,
    frozen_target,
    self_distilled_features,
    teacher_forced_top1,
    train,
    training_source,
    work_dir,
    write_json,
)
from specsel.data import DOMAIN_SPEC_HELP, domains_argument
from specsel.modeling.target import EMBEDDED_DEFAULT
from specsel.study.heldout import measure_mat


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=EMBEDDED_DEFAULT)
    ap.add_argument("--data-dir", default=None, help="local data folder (default: the hub data sets)")
    ap.add_argument("--domains", default="math,humaneval,medqa", help=DOMAIN_SPEC_HELP + " (trains on the train "
                    "parts)")
    ap.add_argument("--tokens-per-domain", type=int, default=50_000)
    ap.add_argument("--self-distill-prompts", type=int, default=300,
                    help="per domain: training prompts the target answers itself (greedy) to train on too")
    ap.add_argument("--self-distill-tokens", type=int, default=128, help="answer length of those")
    ap.add_argument("--self-distill-repeat", type=int, default=2,
                    help="oversample the self-distilled rows this many times (they are what the head will see)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--draft-vocab", type=int, default=8192, help="reduced draft vocabulary size (0: full)")
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--batch-size", type=int, default=4, help="rows of --seq-len tokens per step")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--unroll-weight", type=float, default=0.5,
                    help="weight of the second, unrolled draft step in the loss (training-time test; 0: off)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=25)
    ap.add_argument("--out", required=True, help="where the trained head goes (config.json, model.safetensors)")
    ap.add_argument("--work", default=None, help="features and checkpoints (default: ~/.cache/specsel/train/...)")
    ap.add_argument("--eval-prompts", type=int, default=5, help="held-out eval prompts per domain for the model card")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    args.domain_names = domains_argument(ap, args.domains)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    domains = args.domain_names
    target, tokenizer = frozen_target(args.target, args.threads)
    work = work_dir(args.work, args.target)
    out = Path(args.out)

    data = {d: domain_features(target, tokenizer, d, args.data_dir, args.seed, 0, args.tokens_per_domain,
                               args.seq_len, work, batch_size=8) for d in domains}
    if args.self_distill_prompts:
        for d in domains:
            docs, tok_, val_, feat_ = self_distilled_features(target, tokenizer, d, args.data_dir,
                                                              args.self_distill_prompts, args.self_distill_tokens,
                                                              args.seq_len, work, seed=args.seed)
            human, r = data[d], args.self_distill_repeat
            data[d] = (human[0] + docs, torch.cat([human[1], tok_.repeat(r, 1)]),
                       torch.cat([human[2], val_.repeat(r, 1)]),
                       torch.cat([human[3], feat_.repeat(r, 1, 1)]))
    extract_s = time.perf_counter() - t0
    all_docs = [doc for d in domains for doc in data[d][0]]
    specials = [i for i in tokenizer.all_special_ids if i is not None]
    V = target.config.vocab_size
    draft_tokens = draft_vocabulary(all_docs, args.draft_vocab, V, always=specials) if args.draft_vocab else None
    tokens = torch.cat([data[d][1] for d in domains])
    valid = torch.cat([data[d][2] for d in domains])
    features = torch.cat([data[d][3] for d in domains])
    n_tokens = int(valid.sum())
    coverage = float(torch.isin(tokens[valid], draft_tokens).float().mean()) if draft_tokens is not None else 1.0
    print(f"{len(tokens)} rows, {n_tokens} tokens from {', '.join(domains)}; draft vocabulary "
          f"{len(draft_tokens) if draft_tokens is not None else V} covers {coverage:.1%} of them", flush=True)

    head = new_eagle_head(target, 1, draft_tokens, seed=args.seed).float()
    target_rows = target.get_output_embeddings().weight.detach()[head.draft_to_target].float()

    def loss_fn(rows, generator):
        return eagle_loss(head, target_rows, tokens[rows], features[rows], valid[rows], generator=generator,
                          unroll_weight=args.unroll_weight)

    summary = train(head, loss_fn, len(tokens), args.steps, args.batch_size, args.lr, work / f"eagle-ckpt-{args.seed}",
                    save_every=args.save_every, seed=args.seed,
                    fingerprint={"tokens": n_tokens, "draft_vocab": args.draft_vocab, "domains": domains,
                                 "unroll_weight": args.unroll_weight,
                                 "self_distill": [args.self_distill_prompts, args.self_distill_tokens,
                                                  args.self_distill_repeat]})
    head.save(out, dtype=torch.float16)

    # model card: teacher-forced agreement and greedy MAT on held-out evaluation prompts
    from drafters.eagle_head import load_eagle_head
    shipped = load_eagle_head(out, target)          # what users get (float16 round trip)
    top1 = teacher_forced_top1(shipped, target_rows, tokens[:64], features[:64], valid[:64])
    mat = measure_mat(target, tokenizer, {"eagle": EagleDrafter(target, shipped)}, domains, args.data_dir,
                      n_prompts=args.eval_prompts, gamma=4, max_new_tokens=64)["eagle"]
    card = {
        "kind": "EAGLE-1 head (fc + one LlamaDecoderLayer, target's LM head on a reduced vocabulary)",
        "target": args.target, "domains": domains,
        "data": {d: training_source(d) + (f" + the target's own greedy answers ({args.self_distill_tokens} tokens) "
                                              f"to {args.self_distill_prompts} of its prompts (oversampled "
                                              f"{args.self_distill_repeat}x)"
                                              if args.self_distill_prompts else "") for d in domains},
        "train_tokens": n_tokens, "seq_len": args.seq_len,
        "draft_vocab": len(draft_tokens) if draft_tokens is not None else V, "draft_vocab_coverage": round(coverage, 4),
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "unroll_weight": args.unroll_weight,
        "train_seconds": summary["seconds"], "feature_seconds": round(extract_s, 1),
        "final": {k: round(v, 4) for k, v in summary["last"].items() if k != "step"},
        "train_top1_first_64_rows": round(top1, 4),
        "heldout_mat_gamma4": mat,
        "heldout": f"first {args.eval_prompts} eval prompts per domain, greedy, 64 new tokens",
        "command": "python recipes/train_eagle.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    write_json(out / "training.json", card)
    (out / "README.md").write_text(model_card(card))
    print(json.dumps({k: v for k, v in card.items() if k != "data"}, indent=2))
    return 0


def model_card(c: dict) -> str:
    mats = ", ".join(f"{d} {m:.2f}" for d, m in c["heldout_mat_gamma4"].items())
    data = "\n".join(f"- {d}: {src}" for d, src in c["data"].items())
    return f"""# EAGLE-1 head for {c['target']}

{c['kind']}. Drafts from the target's last hidden state (after the final norm); only `fc`
and the decoder layer are stored (float16); the embedding and LM head are the target's.

- Training data (training splits only, never the evaluation prompts), {c['train_tokens']} tokens:
{data}
- Draft vocabulary: {c['draft_vocab']} most frequent tokens (coverage {c['draft_vocab_coverage']:.1%} of training tokens), `d2t` offsets
- Steps: {c['steps']} x {c['batch_size']} rows of {c['seq_len']} tokens, lr {c['lr']}, seed {c['seed']}; loss: EAGLE-1 (feature
  regression + 0.1 x cross-entropy) + {c['unroll_weight']} x the same on the second, unrolled draft step
- Seconds (2-core CPU): {c['train_seconds']} training; {c['feature_seconds']} for data in this run (self-distillation
  answers and target features; shards cached by an earlier run are reused, not recomputed)
- Final loss terms: {c['final']}
- Held-out greedy MAT at gamma 4 ({c['heldout']}): {mats}

Reproduce:

    {c['command']}
"""


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, OSError) as exc:        # bad options or data: one line that names the fix
        sys.exit(f"{Path(__file__).name}: error: {exc}")

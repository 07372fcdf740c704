"""Train a general EAGLE head (EAGLE-3 by default, or EAGLE-1) for a target on this CPU.

    python recipes/self_distill.py --data-dir ../shared/data --threads 1      # the corpus, resumable
    python recipes/train_eagle.py --data-dir ../shared/data --out drafters/weights/smollm2-135m-instruct/eagle3

EAGLE-3 (--version 3, drafters/training/eagle3.py): trains on the self-distillation corpus of
recipes/self_distill.py (the target's own greedy answers to training prompts of --domains, with
the target features its generation kept: low, mid and high layers fused by the head's fc, and
the final-norm output for the target's distribution). The head has its own norm and LM head
over a draft vocabulary of the --draft-vocab most frequent answer tokens (+ special tokens),
started from the target's final norm and LM-head rows. Loss: cross-entropy against the
target's distribution over the draft vocabulary on answer tokens, over --ttt-steps unrolled
draft steps (training-time test), step k weighted --ttt-decay^(k-1). Checkpoints every
--save-every steps under --work: rerun to resume. The corpus' held-out shard (training
prompts, drafters/training/corpus.py) gives the per-step top-1 on the model card.

EAGLE-1 (--version 1) data: the training splits only (MATH train, MBPP, MedQA test records after the first 300),
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

import hashlib
import json
import sys
import time
from pathlib import Path

import torch

from drafters.eagle import EagleDrafter
from drafters.eagle_head import new_eagle_head
from drafters.training.eagle import (
    EagleLossOptions,
    SelfDistillOptions,
    TokenRange,
    domain_features,
    draft_vocabulary,
    eagle_loss,
    frozen_target,
    self_distilled_features,
    teacher_forced_top1,
    training_source,
    work_dir,
    write_json,
)
from drafters.training.selfdistill import DISTILL_DOMAINS
from drafters.training.trainer import TrainOptions, train
from specsel.data import domains_argument
from specsel.flags import add_flags, flag_parser, parse_flags, run_command
from specsel.study.heldout import measure_mat


def parse_args(argv=None):
    ap = flag_parser("train_eagle", __doc__)
    add_flags(ap, "target", "data_dir", "domains", "corpus_docs", "self_distill_prompts", "self_distill_tokens",
              "self_distill_repeat", "seq_len", "steps", "batch_size", "lr", "unroll_weight", "ttt_steps", "ttt_decay",
              "seed", "save_every", "out", "work", "eval_prompts", "threads", domains=None, required=("out",))
    ap.add_argument("--version", type=int, default=3, choices=(1, 3), help="EAGLE-3 (default) or EAGLE-1 head")
    ap.add_argument("--tokens-per-domain", type=int, default=50_000)
    ap.add_argument("--draft-vocab", type=int, default=8192, help="reduced draft vocabulary size (0: full)")
    args = parse_flags(ap, argv)
    if args.domains is None:
        args.domains = ",".join(DISTILL_DOMAINS if args.version == 3 else ("math", "humaneval", "medqa"))
    args.domain_names = domains_argument(ap, args.domains)
    if args.version == 3 and args.ttt_steps < 1:
        ap.error("--ttt-steps must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.version == 3:
        return train_v3(args, argv)
    t0 = time.perf_counter()
    domains = args.domain_names
    target, tokenizer = frozen_target(args.target, args.threads)
    work = work_dir(args.work, args.target)
    out = Path(args.out)

    data = {d: domain_features(target, tokenizer, d, args.data_dir, TokenRange(args.seed, 0, args.tokens_per_domain),
                               args.seq_len, work, batch_size=8) for d in domains}
    if args.self_distill_prompts:
        for d in domains:
            answers = SelfDistillOptions(args.self_distill_prompts, args.self_distill_tokens, seed=args.seed)
            docs, tok_, val_, feat_ = self_distilled_features(target, tokenizer, d, args.data_dir, answers,
                                                              args.seq_len, work)
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
        return eagle_loss(head, target_rows, tokens[rows], features[rows], valid[rows],
                          EagleLossOptions(unroll_weight=args.unroll_weight), generator=generator)

    options = TrainOptions(args.steps, args.batch_size, args.lr, save_every=args.save_every, seed=args.seed,
                           fingerprint={"tokens": n_tokens, "draft_vocab": args.draft_vocab, "domains": domains,
                                        "unroll_weight": args.unroll_weight,
                                        "self_distill": [args.self_distill_prompts, args.self_distill_tokens,
                                                         args.self_distill_repeat]})
    summary = train(head, loss_fn, len(tokens), options, work / f"eagle-ckpt-{args.seed}")
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


def train_v3(args, argv) -> int:
    """EAGLE-3 head from the self-distillation corpus (module docstring)."""
    from drafters.eagle_head import load_eagle_head
    from drafters.training.corpus import corpus_dir, corpus_rows
    from drafters.training.eagle3 import Eagle3LossOptions, coverage, eagle3_loss, heldout_top1, init_from_target
    from drafters.training.selfdistill import corpus_stats
    t0 = time.perf_counter()
    target, tokenizer = frozen_target(args.target, args.threads)
    work = work_dir(args.work, args.target)
    root = corpus_dir(work, args.target, args.seed, args.self_distill_tokens)
    domains = args.domain_names
    pad = tokenizer.pad_token_id or 0
    train_rows, held_rows, used = corpus_rows(root, domains, args.seq_len, pad, limit=args.corpus_docs)
    tokens, valid, answer, features = train_rows
    load_s = time.perf_counter() - t0
    V = target.config.vocab_size
    answers = [d[p:] for docs, plens in used.values() for d, p in zip(docs, plens)]
    specials = [i for i in tokenizer.all_special_ids if i is not None]
    draft_tokens = draft_vocabulary(answers, args.draft_vocab, V, always=specials) if args.draft_vocab else None
    docs_all = [d for docs, _ in used.values() for d in docs]
    plens_all = [p for _, plens in used.values() for p in plens]
    cover = coverage(docs_all, plens_all, draft_tokens, V) if draft_tokens is not None else 1.0
    n_answer = int((answer & valid).sum())
    print(f"{len(tokens)} rows, {int(valid.sum())} tokens ({n_answer} answer tokens) of {len(docs_all)} answers from "
          f"{', '.join(domains)}; draft vocabulary covers {cover:.1%} of answer tokens", flush=True)

    head = init_from_target(new_eagle_head(target, 3, draft_tokens, seed=args.seed).float(), target)
    target_rows = target.get_output_embeddings().weight.detach()[head.draft_to_target].float()

    def loss_fn(rows, generator):
        return eagle3_loss(head, target_rows, tokens[rows], features[rows].float(), valid[rows], answer[rows],
                           Eagle3LossOptions(steps=args.ttt_steps, decay=args.ttt_decay), generator=generator)

    # one checkpoint folder per run shape, so runs on other domains or vocabularies never meet; the same
    # shape on more (or other) answers is refused by train() with the fix (delete the checkpoint)
    shape = hashlib.sha256(json.dumps([domains, args.draft_vocab, args.ttt_steps, args.ttt_decay, args.seq_len,
                                       args.corpus_docs]).encode()).hexdigest()[:8]
    options = TrainOptions(args.steps, args.batch_size, args.lr, save_every=args.save_every, seed=args.seed,
                           fingerprint={"tokens": int(valid.sum()), "answers": len(docs_all),
                                        "draft_vocab": args.draft_vocab, "domains": domains,
                                        "ttt": [args.ttt_steps, args.ttt_decay], "seq_len": args.seq_len})
    summary = train(head, loss_fn, len(tokens), options, work / f"eagle3-ckpt-{args.seed}-{shape}")
    head.save(args.out, dtype=torch.float16)
    shipped = load_eagle_head(args.out, target)
    held = {}
    if held_rows:
        h_tokens, h_valid, h_answer, h_features = held_rows
        held = heldout_top1(shipped.float(), target_rows, h_tokens, h_features, h_valid, h_answer, steps=args.ttt_steps)
    mat = measure_mat(target, tokenizer, {"eagle3": EagleDrafter(target, shipped)},
                      [d for d in ("math", "humaneval", "medqa") if d in domains] or domains[:1], args.data_dir,
                      n_prompts=args.eval_prompts, gamma=4, max_new_tokens=64, offset=50)["eagle3"]
    stats = corpus_stats(root, domains)
    card = {
        "kind": "EAGLE-3 head (fc over low/mid/high target features + one LlamaDecoderLayer with [embedding; "
                "feature] attention input, own norm and LM head over a reduced draft vocabulary, d2t)",
        "target": args.target, "domains": domains, "version": 3,
        "data": {d: training_source(d) + ": the target's own greedy answers (up to "
                 f"{args.self_distill_tokens} tokens) to {len(used[d][0])} of its training prompts" for d in domains},
        "corpus": {"path": str(root), "domains": stats, "command": "python recipes/self_distill.py --data-dir "
                   f"{args.data_dir} --domains {','.join(domains)} --max-new-tokens {args.self_distill_tokens} "
                   f"--seed {args.seed}"},
        "train_answers": len(docs_all), "train_tokens": int(valid.sum()), "train_answer_tokens": n_answer,
        "seq_len": args.seq_len,
        "draft_vocab": len(draft_tokens) if draft_tokens is not None else V, "draft_vocab_coverage": round(cover, 4),
        "ttt_steps": args.ttt_steps, "ttt_decay": args.ttt_decay,
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "train_seconds": summary["seconds"], "load_seconds": round(load_s, 1),
        "generation_seconds": round(sum(v["seconds"] for v in stats.values()), 1),
        "final": {k: round(v, 4) for k, v in summary["last"].items() if k != "step"},
        "heldout_top1_by_step": held,
        "heldout_top1": "the corpus' held-out shard per domain (training prompts never trained on), answer positions",
        "heldout_mat_gamma4": mat,
        "heldout": f"eval prompts 50-{49 + args.eval_prompts} per domain, greedy, 64 new tokens",
        "command": "python recipes/train_eagle.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    write_json(Path(args.out) / "training.json", card)
    (Path(args.out) / "README.md").write_text(model_card3(card))
    print(json.dumps({k: v for k, v in card.items() if k not in ("data", "corpus")}, indent=2))
    return 0


def model_card3(c: dict) -> str:
    mats = ", ".join(f"{d} {m:.2f}" for d, m in c["heldout_mat_gamma4"].items())
    data = "\n".join(f"- {d}: {src}" for d, src in c["data"].items())
    corpus = "\n".join(f"  - {d}: {v['prompts']} answers, {v['prompt_tokens']} prompt + {v['answer_tokens']} answer "
                        f"tokens, {v['seconds']:.0f} s" for d, v in c["corpus"]["domains"].items())
    return f"""# EAGLE-3 head for {c['target']}

{c['kind']}. Stored in float16 (config.json + model.safetensors, EAGLE-3 keys); the embedding is the target's.

- Training data (training splits only, never an evaluation prompt): {c['train_answers']} self-distilled answers,
  {c['train_tokens']} tokens of which {c['train_answer_tokens']} answer tokens carry the loss:
{data}
- Corpus (`{c['corpus']['command']}`, generation seconds on the 2-core CPU, one thread):
{corpus}
- Draft vocabulary: {c['draft_vocab']} most frequent answer tokens (+ special tokens), covering
  {c['draft_vocab_coverage']:.1%} of answer tokens; `d2t` offsets map draft ids to target ids
- Training-time test: {c['ttt_steps']} unrolled draft steps, step k weighted {c['ttt_decay']}^(k-1)
- Steps: {c['steps']} x {c['batch_size']} rows of {c['seq_len']} tokens, lr {c['lr']}, seed {c['seed']};
  {c['train_seconds']} s training
- Final loss terms: {c['final']}
- Held-out top-1 per draft step ({c['heldout_top1']}): {c['heldout_top1_by_step']}
- Held-out greedy MAT at gamma 4 ({c['heldout']}): {mats}

Reproduce:

    {c['command']}
"""


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
    sys.exit(run_command(main, "train_eagle"))

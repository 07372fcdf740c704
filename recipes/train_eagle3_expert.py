"""Train a domain expert: a LoRA adapter on the EAGLE-3 head, on its domain's self-distilled answers.

    python recipes/train_eagle3_expert.py --data-dir ../shared/data --domain math \
        --base drafters/weights/smollm2-135m-instruct/eagle3 \
        --out drafters/weights/smollm2-135m-instruct/eagle3_lora/math

The adapter (rank --rank on fc and every projection of the decoder layer; the head's own LM
head is left alone, drafters.eagle_family runs it outside the mixed-adapter forwards) trains
with the EAGLE-3 loss and training-time test (drafters/training/eagle3.py) on the domain's part
of the self-distillation corpus only (recipes/self_distill.py: the target's own greedy answers
to TRAINING prompts of the domain; the corpus' held-out shard stays out). Checkpoints every
--save-every steps under --work: rerun to resume. The model card gives the held-out per-step
top-1 and the greedy MAT at gamma 4 of the base head and of the expert on eval prompts 50+ of
the domain (never used by the study or the tuning recipes).
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from pathlib import Path

from drafters.eagle_head import load_eagle_head
from drafters.lora import lora_experts
from drafters.training.corpus import corpus_dir, corpus_rows
from drafters.training.eagle import frozen_target, training_source, work_dir, write_json
from drafters.training.eagle3 import Eagle3LossOptions, eagle3_loss, heldout_top1
from drafters.training.lora import new_lora
from drafters.training.selfdistill import DISTILL_DOMAINS, corpus_stats
from drafters.training.trainer import TrainOptions, train
from specsel.flags import add_flags, flag_parser, parse_flags, run_command
from specsel.study.heldout import measure_mat

EXPERT_NAMES = {"math": "eagle3_math", "humaneval": "eagle3_code", "medqa": "eagle3_medical", "sql": "eagle3_sql",
                "summarization": "eagle3_summarization", "gsm8k": "eagle3_gsm8k", "pubmedqa": "eagle3_pubmedqa",
                "code_instruct": "eagle3_code_instruct"}


def parse_args(argv=None):
    ap = flag_parser("train_eagle3_expert", __doc__)
    add_flags(ap, "target", "data_dir", "domain", "base", "out", "corpus_docs", "self_distill_tokens", "seq_len", "rank",
              "alpha", "steps", "batch_size", "lr", "ttt_steps", "ttt_decay", "seed", "save_every", "eval_prompts", "work",
              "threads", rank=16, alpha=32, steps=200, required=("domain", "base", "out"))
    args = parse_flags(ap, argv)
    if args.domain not in DISTILL_DOMAINS:
        ap.error(f"--domain {args.domain}: choose one of {', '.join(DISTILL_DOMAINS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    target, tokenizer = frozen_target(args.target, args.threads)
    work = work_dir(args.work, args.target)
    root = corpus_dir(work, args.target, args.seed, args.self_distill_tokens)
    (tokens, valid, answer, features), held, used = corpus_rows(root, [args.domain], args.seq_len,
                                                                tokenizer.pad_token_id or 0, limit=args.corpus_docs)
    base = load_eagle_head(args.base, target).float()
    if base.version != 3:
        raise ValueError(f"{args.base} is not an EAGLE-3 head: experts of the EAGLE-1 head train with "
                         "recipes/train_lora_drafter.py")
    model = new_lora(copy.deepcopy(base), rank=args.rank, alpha=args.alpha, seed=args.seed)
    head = model.base_model.model
    target_rows = target.get_output_embeddings().weight.detach()[head.draft_to_target].float()

    def loss_fn(rows, generator):
        return eagle3_loss(head, target_rows, tokens[rows], features[rows].float(), valid[rows], answer[rows],
                           Eagle3LossOptions(steps=args.ttt_steps, decay=args.ttt_decay), generator=generator)

    name = EXPERT_NAMES[args.domain]
    base_hash = hashlib.sha256((Path(args.base) / "model.safetensors").read_bytes()).hexdigest()[:16]
    options = TrainOptions(args.steps, args.batch_size, args.lr, save_every=args.save_every, seed=args.seed,
                           fingerprint={"tokens": int(valid.sum()), "answers": len(used[args.domain][0]),
                                        "rank": args.rank, "alpha": args.alpha, "base": base_hash,
                                        "ttt": [args.ttt_steps, args.ttt_decay]})
    summary = train(model, loss_fn, len(tokens), options, work / f"eagle3-lora-ckpt-{args.domain}-{args.seed}")
    out = Path(args.out)
    model.save_pretrained(out)
    held_top1 = {}
    if held:
        h_tokens, h_valid, h_answer, h_features = held
        held_top1 = {name: heldout_top1(m, target_rows, h_tokens, h_features, h_valid, h_answer, steps=args.ttt_steps)
                     for name, m in (("base", base), ("expert", head))}
    pool = lora_experts(target, load_eagle_head(args.base, target), {name: out}, base_name="eagle3")
    mat = measure_mat(target, tokenizer, pool, [args.domain], args.data_dir, n_prompts=args.eval_prompts, gamma=4,
                      max_new_tokens=64, offset=50)
    stats = corpus_stats(root, [args.domain])[args.domain]
    card = {
        "kind": f"LoRA adapter (rank {args.rank}, alpha {args.alpha}) on fc and the decoder layer of the EAGLE-3 "
                f"head {args.base}",
        "target": args.target, "domain": args.domain, "adapter": name,
        "data": training_source(args.domain) + f": the target's own greedy answers (up to {args.self_distill_tokens} "
                f"tokens) to {len(used[args.domain][0])} of its training prompts",
        "corpus": {"path": str(root), **stats},
        "train_tokens": int(valid.sum()), "train_answer_tokens": int((valid & answer).sum()),
        "ttt_steps": args.ttt_steps, "ttt_decay": args.ttt_decay, "steps": args.steps, "batch_size": args.batch_size,
        "lr": args.lr, "seed": args.seed, "train_seconds": summary["seconds"],
        "seconds_total": round(time.perf_counter() - t0, 1),
        "final": {k: round(v, 4) for k, v in summary["last"].items() if k != "step"},
        "heldout_top1_by_step": held_top1,
        "heldout_mat_gamma4": {"base": mat["eagle3"][args.domain], "expert": mat[name][args.domain]},
        "heldout": f"eval prompts 50-{49 + args.eval_prompts} of {args.domain}, greedy, 64 new tokens",
        "bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file()),
        "command": "python recipes/train_eagle3_expert.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    write_json(out / "training.json", card)
    (out / "README.md").write_text(model_card(card))
    print(json.dumps(card, indent=2))
    return 0


def model_card(c: dict) -> str:
    m = c["heldout_mat_gamma4"]
    return f"""# {c['adapter']}: {c['domain']} expert (EAGLE-3) for {c['target']}

{c['kind']}.

- Training data (training split only, never an evaluation prompt): {c['data']};
  {c['train_tokens']} tokens, {c['train_answer_tokens']} answer tokens carry the loss
- Corpus: {c['corpus']['prompts']} answers generated, {c['corpus']['prompt_tokens']} prompt + {c['corpus']['answer_tokens']}
  answer tokens, {c['corpus']['seconds']:.0f} s of generation (recipes/self_distill.py)
- Training-time test: {c['ttt_steps']} steps, decay {c['ttt_decay']}; {c['steps']} x {c['batch_size']} rows, lr {c['lr']},
  seed {c['seed']}; {c['train_seconds']} s training ({c['seconds_total']} s with loading and the checks below)
- Final loss terms: {c['final']}
- Held-out per-step top-1 (the corpus' held-out shard of this domain): {c['heldout_top1_by_step']}
- Held-out greedy MAT at gamma 4 ({c['heldout']}): base head {m['base']:.2f}, this expert {m['expert']:.2f}
- Size: {c['bytes'] / 1e3:.0f} kB

Reproduce:

    {c['command']}
"""


if __name__ == "__main__":
    sys.exit(run_command(main, "train_eagle3_expert"))

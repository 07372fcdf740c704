"""Training EAGLE heads (and LoRA adapters on them) from teacher-forced target features.

Used by recipes/train_eagle.py and recipes/train_lora_drafter.py; kept here so tests can
run the same code on tiny models.

    features   one target forward per training sequence (no LM head), the hidden states the
               head drafts from; stored in shards so an interrupted extraction resumes
    loss       EAGLE-1 (Li et al. 2024, Sec. 4):  L = SmoothL1(f'_{i+1}, f_{i+1}) + w_p * CE(p_{i+2}, q_{i+2})
               with p the target's next-token distribution at i+1 (its head on the true
               feature, restricted to the draft vocabulary) and q the head's prediction from
               the pair (f_i, t_{i+1}); uniform noise on input features for robustness.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from drafters.eagle_head import EagleHead
from specsel.data import cache_tag, is_user_domain, user_domain_records
from specsel.modeling.compat import capture_hidden_states

# ---------------------------------------------------------------------- data

# where each domain's drafter-training text comes from (model cards)
TRAINING_DATA_SOURCES = {"math": "MATH train (data/math/train_full.jsonl)", "humaneval": "MBPP (data/mbpp/mbpp.jsonl)",
                         "medqa": "MedQA USMLE 4-option test records 300+ (data/medqa/test.jsonl)",
                         "gsm8k": "GSM8K train",
                         "sql": "Spider dev questions after the first 300, on databases those never use "
                                "(data/spider/dev.json, schemas from tables.json)",
                         "summarization": "CNN/DailyMail train articles with GPT-4 summaries "
                                          "(data/cnn_dailymail/sumllm_gpt4_train1000.jsonl)"}


def training_source(domain: str) -> str:
    """Where a domain's drafter-training text comes from, for model cards; a user domain (NAME=PATH)
    names its file (or hub split), the file's sha256 and where its train part starts."""
    user = user_domain_records([domain]).get(domain)
    if user is None:
        return TRAINING_DATA_SOURCES.get(domain, domain)
    where = (user["path"] + f" (sha256 {user['sha256'][:12]})") if "path" in user else "hf:" + user["hub"]
    return f"user domain {domain}: {where}, the records after the first {user['eval_size']}"


def frozen_target(name: str, threads: int | None = None):
    """The target (and tokenizer) for training drafters on it: no gradients, `threads` torch threads."""
    from specsel.modeling.target import load_target
    if threads:
        torch.set_num_threads(threads)
    target, tokenizer = load_target(name)
    for p in target.parameters():
        p.requires_grad_(False)
    return target, tokenizer


def work_dir(work: str | None, target_name: str) -> Path:
    """Where features, self-distilled text and checkpoints go (default ~/.cache/specsel/train/<target>)."""
    from specsel.modeling.target import cache_root
    return Path(work) if work else cache_root() / "train" / Path(target_name).name



def pack_sequences(token_lists: Sequence[Sequence[int]], seq_len: int,
                   pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate documents and cut into rows of `seq_len` tokens (no padding but the last row).

    Returns (tokens [N, seq_len], valid [N, seq_len])."""
    flat = [t for ids in token_lists for t in ids]
    n = max(1, math.ceil(len(flat) / seq_len))
    tokens = torch.full((n * seq_len,), pad_id, dtype=torch.long)
    tokens[: len(flat)] = torch.tensor(flat, dtype=torch.long)
    valid = torch.zeros(n * seq_len, dtype=torch.bool)
    valid[: len(flat)] = True
    return tokens.view(n, seq_len), valid.view(n, seq_len)


def draft_vocabulary(token_lists: Sequence[Sequence[int]], size: int, vocab_size: int,
                     always: Sequence[int] = ()) -> torch.Tensor:
    """The `size` most frequent target tokens of the training text (plus `always`, e.g. the
    special tokens of the chat template), ascending: a reduced draft vocabulary."""
    counts = torch.zeros(vocab_size, dtype=torch.long)
    for ids in token_lists:
        counts += torch.bincount(torch.tensor(list(ids), dtype=torch.long), minlength=vocab_size)
    counts[list(always)] = counts.max() + 1
    return counts.topk(min(size, vocab_size)).indices.sort().values


@torch.inference_mode()
def extract_features(target, tokens: torch.Tensor, layers: Sequence[int], out_dir: str | Path,
                     batch_size: int = 8, shard_rows: int = 64, dtype=torch.float16,
                     progress: bool = True) -> list[Path]:
    """Target features (hidden states `layers`, concatenated) of every row of `tokens`, written
    as safetensors shards of `shard_rows` rows. Existing shards are kept (resume)."""
    from safetensors.torch import save_file
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    n_shards = math.ceil(len(tokens) / shard_rows)
    bar = tqdm(total=len(tokens), desc="target features", unit="seq", disable=not progress)
    for s in range(n_shards):
        path = out_dir / f"features-{s:05d}.safetensors"
        rows = tokens[s * shard_rows: (s + 1) * shard_rows]
        shards.append(path)
        if path.exists():
            bar.update(len(rows))
            continue
        parts = []
        for b in range(0, len(rows), batch_size):
            x = rows[b: b + batch_size].to(target.device)
            with capture_hidden_states(target, layers) as got:
                target(input_ids=x, logits_to_keep=1, use_cache=False)
            parts.append(torch.cat([got[k] for k in layers], dim=-1).to(dtype).cpu())
            bar.update(len(x))
        tmp = path.with_suffix(".tmp")
        save_file({"tokens": rows.contiguous(), "features": torch.cat(parts).contiguous()}, tmp)
        os.replace(tmp, path)       # atomic: a killed run never leaves a half shard
    bar.close()
    return shards


def load_shards(paths: Sequence[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    from safetensors.torch import load_file
    parts = [load_file(p) for p in paths]
    return torch.cat([p["tokens"] for p in parts]), torch.cat([p["features"] for p in parts])


def training_dialogues(domain: str, data_dir=None, limit: int | None = None) -> list[list[dict]]:
    """Training-split records as chat dialogues in the evaluation prompt format: the user turn
    exactly as at evaluation, the assistant turn the data set's own solution (a user domain's
    reference; a user record without one is its conversation alone)."""
    from specsel.data import load_domain
    dialogues = []
    user = is_user_domain(domain)
    for q in load_domain(domain, data_dir, limit=limit, split="train"):
        if domain in ("math", "gsm8k"):
            answer = q.meta.get("solution") or q.reference
        elif domain == "humaneval":           # MBPP code
            answer = f"```python\n{q.reference.strip()}\n```"
        elif domain == "medqa":
            answer = f"{q.reference}. {q.meta['options'][q.reference]}"
        else:
            answer = q.reference
        reply = [] if user and not answer else [{"role": "assistant", "content": answer}]
        dialogues.append([*q.messages, *reply])
    return dialogues


def dialogue_tokens(tokenizer, dialogues: Sequence[list[dict]]) -> list[list[int]]:
    if getattr(tokenizer, "chat_template", None):
        texts = [tokenizer.apply_chat_template(d, tokenize=False) for d in dialogues]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return [tokenizer("\n\n".join(m["content"] for m in d))["input_ids"] for d in dialogues]


def domain_documents(tokenizer, domain: str, data_dir, seed: int) -> list[list[int]]:
    """Every training dialogue of `domain`, tokenized, in a seeded shuffled order."""
    docs = dialogue_tokens(tokenizer, training_dialogues(domain, data_dir))
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    return [docs[i] for i in order]


def token_slice(docs: list[list[int]], start: int, n_tokens: int) -> list[list[int]]:
    """The documents whose first token falls in [start, start + n_tokens) of the concatenation."""
    out, pos = [], 0
    for d in docs:
        if start <= pos < start + n_tokens:
            out.append(d)
        pos += len(d)
    return out


SELF_DISTILL_STYLES = ("plain", "stub")


@dataclass(frozen=True)
class SelfDistillOptions:
    """Which answers to self-distill: prompts [skip, skip + n_prompts) of the seeded order, their length, style."""
    n_prompts: int
    max_new_tokens: int
    seed: int = 0
    style: str = "plain"
    skip: int = 0


def generated_documents(target, tokenizer, domain: str, data_dir, options: SelfDistillOptions, cache: Path,
                        batch_size: int = 16, generate=None) -> list[list[int]]:
    """Self-distillation text: the target's own greedy answers to TRAINING-split prompts
    [skip, skip + n_prompts) of `domain` in a seeded order (prompt + answer token ids; `options`).
    A head drafts the target's outputs, so training on them removes the shift between
    human-written text and what it will see.
    `generate(prompts, max_new_tokens) -> list of token lists` (lossless speculative decoding
    is fine: greedy output is the target's own). Batches of `batch_size` prompts are appended
    to `cache` (JSONL) as they finish; a rerun resumes. `style="stub"` poses code problems as
    HumanEval does (specsel.data.as_function_stub)."""
    from specsel.data import as_function_stub, encode_prompts, load_domain
    n_prompts, max_new_tokens, seed, style, skip = (options.n_prompts, options.max_new_tokens, options.seed,
                                                     options.style, options.skip)
    if style not in SELF_DISTILL_STYLES:
        raise ValueError(f"unknown self-distillation style {style!r}: use one of {', '.join(SELF_DISTILL_STYLES)}")
    queries = load_domain(domain, data_dir, split="train")
    order = torch.randperm(len(queries), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    chosen = [queries[i] for i in order[skip: skip + n_prompts]]
    if style == "stub":
        chosen = [as_function_stub(q) for q in chosen]
    prompts = encode_prompts(tokenizer, chosen, max_prompt_tokens=1024, truncate=True)
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            done[rec["qid"]] = rec["tokens"]
    todo = sorted((i for i, q in enumerate(chosen) if q.qid not in done), key=lambda i: len(prompts[i]))  # even batches
    bar = tqdm(total=len(chosen), initial=len(chosen) - len(todo), desc=f"self-distill {domain}", unit="prompt")
    for b in range(0, len(todo), batch_size):
        idx = todo[b: b + batch_size]
        outs = generate([prompts[i] for i in idx], max_new_tokens)
        with open(cache, "a") as f:
            for i, out in zip(idx, outs):
                done[chosen[i].qid] = prompts[i] + list(out)
                f.write(json.dumps({"qid": chosen[i].qid, "tokens": done[chosen[i].qid]}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        bar.update(len(idx))
    bar.close()
    return [done[q.qid] for q in chosen]


def features_of(target, docs: list[list[int]], seq_len: int, out_dir: Path, pad_id: int, batch_size: int = 8):
    """Packed rows, validity and target features (after the final norm) of token documents."""
    tokens, valid = pack_sequences(docs, seq_len, pad_id=pad_id)
    shards = extract_features(target, tokens, [target.config.num_hidden_layers], out_dir, batch_size=batch_size)
    stored_tokens, features = load_shards(shards)
    if not torch.equal(stored_tokens, tokens):
        raise ValueError(f"feature shards under {out_dir} were made from other text: delete that folder and rerun")
    return tokens, valid, features


def greedy_generator(target, tokenizer, eos_token_id=None):
    """`generate(prompts, n)` for generated_documents(): transformers' batched greedy generate
    on left-padded prompts (measured faster here than the engine's n-gram path at batch 32, and
    token-identical to it), answers cut after the first EOS."""
    eos = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    @torch.no_grad()
    def generate(prompts, n):
        width = max(map(len, prompts))
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        out = target.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False,
                              pad_token_id=pad, eos_token_id=eos)[:, width:].tolist()
        return [row[: row.index(eos) + 1] if eos in row else row for row in out]
    return generate


def self_distilled_features(target, tokenizer, domain: str, data_dir, options: SelfDistillOptions, seq_len: int,
                            work: Path, batch_size: int = 32):
    """generated_documents() (greedy answers of the target, `batch_size` prompts a batch) and
    their features, for prompts [skip, skip + n_prompts) of the seeded training order (`options`).
    Returns (docs, tokens, valid, features) like domain_features(). The answer cache is shared
    by every prompt count."""
    n_prompts, max_new_tokens, seed, style, skip = (options.n_prompts, options.max_new_tokens, options.seed,
                                                     options.style, options.skip)
    tag = cache_tag(domain)                   # the domain; a user domain's adds its file's hash
    name = tag if style == "plain" else f"{tag}-{style}"
    docs = generated_documents(target, tokenizer, domain, data_dir, options,
                               work / f"selfdistill-{name}-{seed}-{max_new_tokens}.jsonl", batch_size=batch_size,
                               generate=greedy_generator(target, tokenizer))
    tag = f"{name}-{seed}-{skip}-{n_prompts}-{max_new_tokens}"
    tokens, valid, features = features_of(target, docs, seq_len, work / f"features-selfdistill-{tag}-{seq_len}",
                                          pad_id=tokenizer.pad_token_id or 0)
    return docs, tokens, valid, features


@dataclass(frozen=True)
class TokenRange:
    """Tokens [start, start + n_tokens) of a domain's training text, its documents in the order `seed` shuffles."""
    seed: int
    start: int
    n_tokens: int


def domain_features(target, tokenizer, domain, data_dir, text: TokenRange, seq_len, work: Path, batch_size: int):
    """Packed rows and target features of tokens [start, start+n) of a domain's training text (`text`)."""
    seed, start, n_tokens = text.seed, text.start, text.n_tokens
    docs = token_slice(domain_documents(tokenizer, domain, data_dir, seed), start, n_tokens)
    if not docs:
        raise ValueError(f"no {domain} training document starts within tokens [{start}, {start + n_tokens}) of its "
                         "training text: raise the token count (or lower the tokens before it)")
    tokens, valid = pack_sequences(docs, seq_len, pad_id=tokenizer.pad_token_id or 0)
    layer = target.config.num_hidden_layers           # hidden state after the final norm
    shards = extract_features(target, tokens, [layer],
                              work / f"features-{cache_tag(domain)}-{seed}-{start}-{n_tokens}-{seq_len}",
                              batch_size=batch_size)
    stored_tokens, features = load_shards(shards)
    if not torch.equal(stored_tokens, tokens):
        raise ValueError(f"feature shards under {work} were made from other text: delete that folder and rerun")
    return docs, tokens, valid, features


# ---------------------------------------------------------------------- loss

def unrolled_mask(n: int, device=None) -> torch.Tensor:
    """Attention mask [2n, 2n] (True = attend) over [true pairs | own-output pairs] for the
    second draft step (EAGLE-3's training-time test): true pairs are causal; the own-output
    pair at position j sees the true pairs before j and itself, as at drafting time."""
    i = torch.arange(n, device=device)
    causal = i[:, None] >= i[None, :]
    m = torch.zeros(2 * n, 2 * n, dtype=torch.bool, device=device)
    m[:n, :n] = causal
    m[n:, :n] = i[:, None] > i[None, :]
    m[n:, n:] = torch.eye(n, dtype=torch.bool, device=device)
    return m


@dataclass(frozen=True)
class EagleLossOptions:
    """eagle_loss() weights: input feature noise (x feature RMS), CE weight p_weight, second-step weight."""
    noise: float = 0.1
    p_weight: float = 0.1
    unroll_weight: float = 0.0


def eagle_loss(head: EagleHead, target_rows: torch.Tensor, tokens: torch.Tensor, features: torch.Tensor,
               valid: torch.Tensor | None = None, options: EagleLossOptions = EagleLossOptions(),
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict]:
    """EAGLE-1 loss on a batch of sequences.

    tokens [B, T], features [B, T, F] (true target features, f_i after token t_i);
    target_rows [Vd, H]: the target head's rows of the draft vocabulary (p on those tokens).
    Pair i = (t_{i+1}, f_i) predicts f_{i+1} (smooth L1) and t_{i+2} (cross-entropy against p,
    weight options.p_weight); input features get U(-noise, noise) x their RMS (options.noise).
    options.unroll_weight > 0 adds the second draft step: pair (t_{i+1}, h_{i-1}) with the head's own
    prediction h_{i-1} of f_i, attending to the true pairs before it (unrolled_mask), has the
    same targets; its loss is added with this weight. EAGLE-1/2 heads only: an EAGLE-3 head's
    output is not a target feature."""
    if head.version != 1:
        raise ValueError("eagle_loss trains EAGLE-1/2 heads; EAGLE-3 heads are loaded, not trained, here")
    noise, p_weight, unroll_weight = options.noise, options.p_weight, options.unroll_weight
    x_tokens, x_feats = tokens[:, 1:-1], features[:, :-2].float()
    if noise:
        scale = x_feats.pow(2).mean().sqrt()
        u = torch.rand(x_feats.shape, generator=generator, device=x_feats.device)
        x_feats = x_feats + (u * 2 - 1) * noise * scale            # U(-noise, noise) x feature RMS
    n = x_tokens.shape[1]
    mask = torch.ones_like(tokens[:, 2:], dtype=torch.bool) if valid is None else valid[:, 2:]
    true_next = features[:, 1:-1].float()                             # f_{i+1}
    with torch.no_grad():
        p = torch.softmax(true_next @ target_rows.T.float(), dim=-1)
    out = head(input_ids=x_tokens, features=x_feats)                  # pair i -> f'_{i+1}, t_{i+2}
    loss, stats = _step_loss(out, p, true_next, mask.float(), p_weight)
    if unroll_weight:
        own = torch.cat([torch.zeros_like(out.hidden[:, :1]), out.hidden[:, :-1]], dim=1)    # h_{i-1} in place of f_i
        pos = torch.arange(n, device=tokens.device)
        both = head(input_ids=torch.cat([x_tokens, x_tokens], 1), features=torch.cat([x_feats, own], 1),
                    attention_mask=unrolled_mask(n, tokens.device)[None, None],
                    position_ids=torch.cat([pos, pos])[None].expand(len(tokens), -1))
        second = SimpleNamespace(hidden=both.hidden[:, n:], logits=both.logits[:, n:])
        m2 = mask.float().clone()
        m2[:, 0] = 0                                                  # no h_{-1}
        loss2, stats2 = _step_loss(second, p, true_next, m2, p_weight)
        loss = loss + unroll_weight * loss2
        stats["top1_step2"] = stats2["top1"]
    return loss, stats


def _step_loss(out, p, true_next, m, p_weight):
    log_q = torch.log_softmax(out.logits.float(), dim=-1)
    ce = -(p * log_q).sum(-1)
    total = m.sum().clamp_min(1)
    p_loss = (ce * m).sum() / total
    v_loss = (F.smooth_l1_loss(out.hidden.float(), true_next, reduction="none").mean(-1) * m).sum() / total
    with torch.no_grad():
        acc = ((out.logits.argmax(-1) == p.argmax(-1)).float() * m).sum() / total
    return v_loss + p_weight * p_loss, {"v_loss": float(v_loss.detach()), "p_loss": float(p_loss.detach()),
                                        "top1": float(acc)}


@torch.no_grad()
def teacher_forced_top1(head: EagleHead, target_rows: torch.Tensor, tokens: torch.Tensor, features: torch.Tensor,
                        valid: torch.Tensor | None = None, batch_size: int = 8) -> float:
    """Share of positions where the head's teacher-forced top-1 equals the target's top-1."""
    hits = total = 0.0
    was_training = head.training
    head.eval()
    for b in range(0, len(tokens), batch_size):
        t, f = tokens[b: b + batch_size], features[b: b + batch_size]
        v = None if valid is None else valid[b: b + batch_size]
        _, stats = eagle_loss(head, target_rows, t, f, v, EagleLossOptions(noise=0.0))
        n = float((v[:, 2:] if v is not None else torch.ones_like(t[:, 2:])).sum())
        hits += stats["top1"] * n
        total += n
    head.train(was_training)
    return hits / max(total, 1.0)


def write_json(path: str | Path, data: dict) -> None:
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)

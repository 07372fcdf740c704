"""Self-distillation corpus: the target's own greedy answers to training-split prompts, in shards.

A drafter drafts the target's outputs, so that text is what it must learn (EAGLE-3 trains on
the target's answers too). Prompts come from the TRAINING split of each domain only
(specsel.data.load_domain(..., split="train")), in a seeded order.

Layout under `root` (one folder per target, seed and answer length):

    config.json                          what the shards were made with (a mismatch is refused)
    <domain>/<chunk>-<batch>.safetensors one generated batch: tokens (prompt + answer, flat),
                                         prompt_lens, answer_lens, and with `layers` the target's
                                         hidden states of every token (features, float16, the
                                         generation's own forwards: no second pass over the text);
                                         metadata qids, seconds

A domain's seeded order is cut into chunks of `batches_per_chunk` batches; a chunk's prompts
are sorted by length before batching (less padding). Chunks are generated whole and domains
take turns chunk by chunk, so a partial corpus covers every domain. Each batch is written
atomically when it finishes: a killed run loses at most the batch in flight, and rerunning
the same command resumes.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

# the domains with a training split, and how their prompts are posed (MBPP as HumanEval poses problems)
DISTILL_DOMAINS = ("math", "gsm8k", "humaneval", "code_instruct", "medqa", "pubmedqa", "sql", "summarization")
STYLES = {"humaneval": "stub"}


def ordered_queries(domain: str, data_dir, seed: int) -> list:
    """The TRAINING split of `domain` in a seeded order, posed in the domain's style."""
    from specsel.data import as_function_stub, load_domain
    queries = load_domain(domain, data_dir, split="train")
    order = torch.randperm(len(queries), generator=torch.Generator().manual_seed(seed)).tolist()
    queries = [queries[i] for i in order]
    if STYLES.get(domain) == "stub":
        queries = [as_function_stub(q) for q in queries]
    return queries


def _config(root: Path, config: dict) -> None:
    path = root / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != config:
            raise ValueError(f"{root} holds answers made with {old}, not {config}: use another --work folder "
                             "or delete that one")
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=1))
    os.replace(tmp, path)


def chunk_batches(prompts: Sequence[Sequence[int]], start: int, chunk: int, batch_size: int) -> list[list[int]]:
    """Indices [start, start + chunk) of `prompts`, sorted by length (stable), cut into batches."""
    idx = sorted(range(start, min(start + chunk, len(prompts))), key=lambda i: len(prompts[i]))
    return [idx[b: b + batch_size] for b in range(0, len(idx), batch_size)]


def _write_shard(path: Path, qids: list[str], prompts: list[list[int]], answers: list[list[int]],
                 seconds: float, features: list[torch.Tensor] | None = None) -> None:
    from safetensors.torch import save_file
    flat = [t for p, a in zip(prompts, answers) for t in (*p, *a)]
    tensors = {"tokens": torch.tensor(flat, dtype=torch.int32),
               "prompt_lens": torch.tensor([len(p) for p in prompts], dtype=torch.int32),
               "answer_lens": torch.tensor([len(a) for a in answers], dtype=torch.int32)}
    if features is not None:
        tensors["features"] = torch.cat(features).to(torch.float16).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, tmp, metadata={"qids": json.dumps(qids), "seconds": f"{seconds:.3f}"})
    os.replace(tmp, path)          # atomic: a killed run never leaves half a shard


@dataclass(frozen=True)
class CorpusOptions:
    """What a corpus is made with (its config.json): answer length, seed, batching, prompt cut, target, layers."""
    max_new_tokens: int
    seed: int = 0
    batch_size: int = 16
    batches_per_chunk: int = 8
    max_prompt_tokens: int = 1024
    target_name: str = ""
    layers: Sequence[int] = ()


def generate_corpus(tokenizer, generate: Callable, domains: Sequence[str], prompts_per_domain: dict[str, int],
                    data_dir, root: str | Path, options: CorpusOptions, progress: bool = True) -> dict:
    """Generate (or resume) the answers to the first `prompts_per_domain[d]` prompts of each
    domain's seeded training order, rounded up to whole chunks. `generate(prompts, n) -> answers`
    (token lists, cut after EOS) must be the target's greedy decoding; with `options.layers` it
    returns (answers, features) instead (greedy_with_features). Returns corpus_stats()."""
    from specsel.data import encode_prompts
    max_new_tokens, seed, batch_size, batches_per_chunk = (options.max_new_tokens, options.seed, options.batch_size,
                                                           options.batches_per_chunk)
    max_prompt_tokens, target_name, layers = options.max_prompt_tokens, options.target_name, options.layers
    root = Path(root)
    _config(root, {"target": target_name, "seed": seed, "max_new_tokens": max_new_tokens, "batch_size": batch_size,
                   "batches_per_chunk": batches_per_chunk, "max_prompt_tokens": max_prompt_tokens,
                   "layers": list(layers)})
    chunk = batch_size * batches_per_chunk
    plans = {}
    for d in domains:
        queries = ordered_queries(d, data_dir, seed)
        n = min(len(queries), -(-prompts_per_domain[d] // chunk) * chunk)
        plans[d] = (queries[:n], encode_prompts(tokenizer, queries[:n], max_prompt_tokens, truncate=True))
    jobs = []             # (domain, chunk index, batch index, prompt indices): domains take turns chunk by chunk
    for c in range(max(-(-len(q) // chunk) for q, _ in plans.values())):
        for d, (queries, prompts) in plans.items():
            for b, idx in enumerate(chunk_batches(prompts, c * chunk, chunk, batch_size) if c * chunk < len(queries)
                                    else []):
                jobs.append((d, c, b, idx))
    total = sum(len(idx) for *_, idx in jobs)
    bar = tqdm(total=total, desc="self-distill", unit="prompt", disable=not progress)
    for d, c, b, idx in jobs:
        path = root / d / f"{c:04d}-{b:02d}.safetensors"
        if not path.exists():
            queries, prompts = plans[d]
            t0 = time.perf_counter()
            answers = generate([prompts[i] for i in idx], max_new_tokens)
            answers, features = answers if layers else (answers, None)
            _write_shard(path, [queries[i].qid for i in idx], [prompts[i] for i in idx], [list(a) for a in answers],
                         time.perf_counter() - t0, features)
        bar.update(len(idx))
    bar.close()
    return corpus_stats(root, domains)


def read_shard(path: Path, features: bool = False):
    """(qids, prompt + answer token lists, prompt lengths, seconds, per-document features or
    None) of one shard."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        flat, plen, alen = (f.get_tensor(k) for k in ("tokens", "prompt_lens", "answer_lens"))
        feats = f.get_tensor("features") if features and "features" in f.keys() else None
    if features and feats is None:
        raise ValueError(f"{path} holds no features: regenerate that corpus with features (recipes/self_distill.py)")
    docs, parts, at = [], [], 0
    for p, a in zip(plen.tolist(), alen.tolist()):
        docs.append(flat[at: at + p + a].tolist())
        parts.append(None if feats is None else feats[at: at + p + a])
        at += p + a
    return json.loads(meta["qids"]), docs, plen.tolist(), float(meta["seconds"]), parts


def load_corpus(root: str | Path, domain: str, limit: int | None = None, skip: int = 0, features: bool = False):
    """A domain's finished answers, chunk by chunk in generation order: (qids, docs, prompt
    lengths, features or Nones); `skip` and `limit` select by that order (a held-back part)."""
    rows = {}
    for path in sorted((Path(root) / domain).glob("*.safetensors")):
        qids, docs, plens, _, feats = read_shard(path, features)
        c, b = (int(x) for x in path.stem.split("-"))
        for i, (q, doc, p, f) in enumerate(zip(qids, docs, plens, feats)):
            rows[q] = ((c, b, i), doc, p, f)
    order = sorted(rows, key=lambda q: rows[q][0])
    order = order[skip:] if limit is None else order[skip: skip + limit]
    return order, [rows[q][1] for q in order], [rows[q][2] for q in order], [rows[q][3] for q in order]


def corpus_stats(root: str | Path, domains: Sequence[str]) -> dict:
    """Per domain: prompts answered, prompt and answer tokens, generation seconds (model cards)."""
    out = {}
    for d in domains:
        n = prompt_tokens = answer_tokens = 0
        seconds = 0.0
        for path in sorted((Path(root) / d).glob("*.safetensors")):
            _, docs, plens, s, _ = read_shard(path)
            n += len(docs)
            prompt_tokens += sum(plens)
            answer_tokens += sum(len(doc) for doc in docs) - sum(plens)
            seconds += s
        out[d] = {"prompts": n, "prompt_tokens": prompt_tokens, "answer_tokens": answer_tokens,
                  "seconds": round(seconds, 1)}
    return out


def greedy_with_features(target, eos_token_id: int, pad_token_id: int, layers: Sequence[int]):
    """`generate(prompts, n) -> (answers, features)` for generate_corpus(): batched greedy
    decoding of left-padded prompts with a KV cache, keeping the hidden states `layers`
    (specsel.modeling.compat numbering) of every prompt and answer token from the decoding's own
    forwards. Answers are cut after the first EOS; features [len(prompt + answer), len(layers) * H]."""
    from transformers import DynamicCache

    from specsel.modeling.compat import cache_kwargs, capture_hidden_states

    @torch.inference_mode()
    def generate(prompts, n):
        B, width = len(prompts), max(map(len, prompts))
        ids = torch.tensor([[pad_token_id] * (width - len(p)) + list(p) for p in prompts], device=target.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=target.device)
        pos = (mask.cumsum(1) - 1).clamp_min(0)
        cache, steps, answers = DynamicCache(), [], []
        done = torch.zeros(B, dtype=torch.bool, device=target.device)
        with capture_hidden_states(target, layers) as got:
            for k in range(n + 1):        # the last forward only gives the last answer token's features
                out = target(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                             **cache_kwargs(target, cache))
                steps.append(torch.cat([got[i] for i in layers], dim=-1).to(torch.float16).cpu())
                if k == n or bool(done.all()):
                    break
                ids = out.logits[:, -1].argmax(-1)[:, None]
                answers.append(ids[:, 0].cpu())
                done |= ids[:, 0] == eos_token_id
                mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
                pos = pos[:, -1:] + 1
        tokens = torch.stack(answers, 1).tolist()
        feats = torch.cat(steps, dim=1)
        outs, fs = [], []
        for r, (p, row) in enumerate(zip(prompts, tokens)):
            ans = row[: row.index(eos_token_id) + 1] if eos_token_id in row else row
            outs.append(ans)
            fs.append(feats[r, width - len(p): width + len(ans)])
        return outs, fs
    return generate

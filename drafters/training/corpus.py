"""Training rows from the self-distillation corpus (drafters.training.selfdistill): packed
token rows with the target features the corpus stored, an answer mask, and a held-out part.

The held-out part of a domain is one fixed shard, HELDOUT (the last batch of its first
chunk): training-split prompts the head never trains on, stable however far the corpus has
grown. It measures the per-step top-1 agreement of the training-time test (model cards).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch

from drafters.training.selfdistill import load_corpus

HELDOUT = "0000-07"


def corpus_dir(work: Path, target: str, seed: int, max_new_tokens: int) -> Path:
    """Where recipes/self_distill.py keeps the corpus of (target, seed, answer length) under `work`."""
    return Path(work) / "selfdistill" / f"{Path(target).name}-s{seed}-n{max_new_tokens}"


def pack_with_features(docs: Sequence[Sequence[int]], prompt_lens: Sequence[int], feats: Sequence[torch.Tensor],
                       seq_len: int, pad_id: int = 0):
    """Documents (prompt + answer) and their per-token features, concatenated and cut into rows
    of `seq_len`. Returns (tokens, valid, answer, features [N, seq_len, F] float16)."""
    total = sum(len(d) for d in docs)
    n = max(1, math.ceil(total / seq_len))
    F = feats[0].shape[-1] if feats else 1
    tokens = torch.full((n * seq_len,), pad_id, dtype=torch.long)
    valid = torch.zeros(n * seq_len, dtype=torch.bool)
    answer = torch.zeros(n * seq_len, dtype=torch.bool)
    features = torch.zeros(n * seq_len, F, dtype=torch.float16)
    at = 0
    for doc, p, f in zip(docs, prompt_lens, feats):
        if f.shape[0] != len(doc):
            raise ValueError(f"a corpus document has {len(doc)} tokens but {f.shape[0]} feature rows: regenerate it")
        tokens[at: at + len(doc)] = torch.tensor(list(doc), dtype=torch.long)
        valid[at: at + len(doc)] = True
        answer[at + p: at + len(doc)] = True
        features[at: at + len(doc)] = f.to(torch.float16)
        at += len(doc)
    return (tokens.view(n, seq_len), valid.view(n, seq_len), answer.view(n, seq_len),
            features.view(n, seq_len, F))


def corpus_split(root: Path, domain: str, limit: int | None = None):
    """(train, held) parts of a domain's corpus, each (qids, docs, prompt lengths, features):
    the HELDOUT shard is held out; `limit` caps the training documents (generation order)."""
    qids, docs, plens, feats = load_corpus(root, domain, features=True)
    held_ids = set()
    path = Path(root) / domain / f"{HELDOUT}.safetensors"
    if path.exists():
        from drafters.training.selfdistill import read_shard
        held_ids = set(read_shard(path)[0])
    train = [i for i, q in enumerate(qids) if q not in held_ids][:limit]
    held = [i for i, q in enumerate(qids) if q in held_ids]
    pick = lambda idx: ([qids[i] for i in idx], [docs[i] for i in idx], [plens[i] for i in idx],  # noqa: E731
                        [feats[i] for i in idx])
    return pick(train), pick(held)


class StackedRows:
    """Row-indexable view of several [N_i, T, F] tensors as one [sum N_i, T, F], without the copy
    a torch.cat would make (the features of a full corpus are gigabytes)."""

    def __init__(self, parts: Sequence[torch.Tensor]):
        self.parts = list(parts)
        self.part = torch.cat([torch.full((len(p),), i, dtype=torch.long) for i, p in enumerate(self.parts)])
        self.local = torch.cat([torch.arange(len(p)) for p in self.parts])

    def __len__(self) -> int:
        return len(self.part)

    def __getitem__(self, rows) -> torch.Tensor:
        rows = torch.arange(len(self))[rows] if isinstance(rows, slice) else torch.as_tensor(rows)
        return torch.stack([self.parts[int(p)][int(i)] for p, i in zip(self.part[rows], self.local[rows])])


def corpus_rows(root: Path, domains: Sequence[str], seq_len: int, pad_id: int, limit: int | None = None):
    """Packed training and held-out rows of `domains`. Returns (train, held, docs) with
    train/held = (tokens, valid, answer, features: StackedRows) and docs {domain: (docs, prompt
    lengths)} of the training part. Each domain is packed on its own, so its loaded shards are
    freed before the next is read."""
    parts, held_parts, used = [], [], {}
    for d in domains:
        (_, docs, plens, feats), (_, hdocs, hplens, hfeats) = corpus_split(root, d, limit)
        if not docs:
            raise ValueError(f"the corpus under {root} has no {d} answers yet: run recipes/self_distill.py "
                             f"--domains {d} (or leave {d} out of --domains)")
        parts.append(pack_with_features(docs, plens, feats, seq_len, pad_id))
        if hdocs:
            held_parts.append(pack_with_features(hdocs, hplens, hfeats, seq_len, pad_id))
        used[d] = (docs, plens)
        del feats, hfeats

    def join(ps):
        return (*(torch.cat([p[k] for p in ps]) for k in range(3)), StackedRows([p[3] for p in ps])) if ps else None
    return join(parts), join(held_parts), used

"""The self-distillation corpus: the target's own greedy answers with the features it computed,
in atomic shards that a killed run resumes from, and packed into training rows."""
import json

import pytest
import torch

from drafters.training.corpus import HELDOUT, corpus_split, pack_with_features
from drafters.training.selfdistill import (
    CorpusOptions,
    corpus_stats,
    generate_corpus,
    greedy_with_features,
    load_corpus,
)
from specsel import Arm, SpecEngine
from specsel.testing import random_prompts, tiny_model

LAYERS = [1, 2]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_answers_are_the_targets_greedy_output_and_features_its_hidden_states():
    target = tiny_model("llama", seed=0, num_layers=2, logit_scale=3.0)
    prompts = random_prompts(6, min_len=2, max_len=12, seed=3)
    free = SpecEngine(target, {}, eos_token_id=[]).generate(prompts, Arm.autoregressive(), max_new_tokens=20).tokens
    eos = free[0][5]                              # the first answer must stop there
    answers, feats = greedy_with_features(target, eos, 0, LAYERS)(prompts, 20)
    want = SpecEngine(target, {}, eos_token_id=eos).generate(prompts, Arm.autoregressive(), max_new_tokens=20).tokens
    assert [list(a) for a in answers] == [list(w) for w in want] and answers[0][-1] == eos
    for p, a, f in zip(prompts, answers, feats):
        with torch.no_grad():
            hs = target(torch.tensor([p + a]), output_hidden_states=True).hidden_states
        torch.testing.assert_close(f.float(), torch.cat([hs[k] for k in LAYERS], -1)[0], atol=2e-3, rtol=2e-3)


class CharTokenizer:
    """No chat template: encode_prompts tokenizes the user text (one id per character)."""
    chat_template = None

    def __call__(self, text, **_):
        return {"input_ids": [2 + ord(c) % 100 for c in text[:12]]}


def toy_domain(tmp_path, n=42):
    """A user domain (2 eval records, 40 training records) named after the test (names are process-wide)."""
    from specsel.data import resolve_domains
    name = "toy_" + tmp_path.name.replace("-", "_")[-24:]
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"question {i} " + "x" * (i % 7)}) + "\n" for i in range(n)))
    return resolve_domains(f"{name}={path}@2")[0]


def make(tmp_path, root, generate=None, prompts=40):
    """The corpus of the test's toy domain under `root`: ({domain: stats}, domain)."""
    target = tiny_model("llama", seed=0, num_layers=2, logit_scale=3.0)
    gen = generate or greedy_with_features(target, -1, 0, LAYERS)
    name = toy_domain(tmp_path)
    return generate_corpus(CharTokenizer(), gen, [name], {name: prompts}, None, root,
                           CorpusOptions(6, seed=0, batch_size=4, batches_per_chunk=2, layers=LAYERS),
                           progress=False)[name], name


def test_a_killed_generation_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    target = tiny_model("llama", seed=0, num_layers=2, logit_scale=3.0)
    real = greedy_with_features(target, -1, 0, LAYERS)
    calls = []

    def killed_after_three(prompts, n):
        if len(calls) == 3:
            raise KeyboardInterrupt          # the kill lands while the 4th batch is being generated
        calls.append(len(prompts))
        return real(prompts, n)
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path, tmp_path / "a", killed_after_three)
    assert len(list((tmp_path / "a").glob("*/*.safetensors"))) == 3

    def counting(prompts, n):
        calls.append(len(prompts))
        return real(prompts, n)
    calls.clear()
    stats, toy = make(tmp_path, tmp_path / "a", counting)
    assert len(calls) == 10 - 3 and stats["prompts"] == 40      # only the missing batches ran
    make(tmp_path, tmp_path / "b")
    a, b = load_corpus(tmp_path / "a", toy, features=True), load_corpus(tmp_path / "b", toy, features=True)
    assert a[:3] == b[:3] and len(a[0]) == 40 and len(set(a[0])) == 40
    assert all(torch.equal(x, y) for x, y in zip(a[3], b[3]))
    assert all(q.startswith(f"{toy}/train/") for q in a[0])            # training records only


def test_other_settings_are_refused_and_stats_count_the_corpus(tmp_path):
    _, toy = make(tmp_path, tmp_path / "c", prompts=8)
    target = tiny_model("llama", seed=0, num_layers=2, logit_scale=3.0)
    with pytest.raises(ValueError, match="use another --work folder"):      # another answer length
        generate_corpus(CharTokenizer(), greedy_with_features(target, -1, 0, LAYERS), [toy], {toy: 8}, None,
                        tmp_path / "c", CorpusOptions(7, batch_size=4, batches_per_chunk=2, layers=LAYERS),
                        progress=False)
    stats = corpus_stats(tmp_path / "c", [toy])[toy]
    qids, docs, plens, _ = load_corpus(tmp_path / "c", toy)
    assert stats["prompts"] == 8 == len(docs)          # 8 prompts: one whole chunk of 2 batches of 4
    assert stats["prompt_tokens"] == sum(plens) and stats["answer_tokens"] == sum(map(len, docs)) - sum(plens)


def test_held_out_shard_and_packing(tmp_path):
    _, toy = make(tmp_path, tmp_path / "d", prompts=40)
    folder = tmp_path / "d" / toy
    (path := folder / "0000-01.safetensors").rename(folder / f"{HELDOUT}.safetensors")   # as if 8 batches a chunk
    (train, held) = corpus_split(tmp_path / "d", toy)
    assert len(held[0]) == 4 and len(train[0]) == 36 and not set(held[0]) & set(train[0])
    _, docs, plens, feats = train
    tokens, valid, answer, features = pack_with_features(docs, plens, feats, 16)
    flat = tokens[valid].tolist()
    assert flat == [t for d in docs for t in d]
    assert int(answer.sum()) == sum(len(d) - p for d, p in zip(docs, plens))
    torch.testing.assert_close(features.reshape(-1, features.shape[-1])[valid.flatten()], torch.cat(feats).half())
    assert not path.exists()


def test_stacked_rows_index_like_the_concatenation():
    from drafters.training.corpus import StackedRows
    parts = [torch.randn(3, 4, 2), torch.randn(5, 4, 2)]
    whole, rows = torch.cat(parts), StackedRows(parts)
    assert len(rows) == 8
    for idx in (torch.tensor([7, 0, 3, 3]), slice(2, 6), torch.randperm(8)[:4]):
        assert torch.equal(rows[idx], whole[idx])

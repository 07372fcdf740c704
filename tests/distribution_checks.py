"""Exact distributions of a tiny-vocabulary target, and the chi-square test the sampling
losslessness tests compare drafted samples with."""
import itertools

import numpy as np
import torch
from scipy.stats import chisquare

from specsel.testing import tiny_model

V, N_TOKENS, N_SAMPLES = 6, 3, 6000
PROMPT = [2, 3, 4, 2, 3]          # repeats, so the n-gram drafter proposes too


def models():
    """The tiny target and a sharp, different drafter model."""
    target = tiny_model("llama", seed=0, vocab_size=V, logit_scale=4.0)
    drafter = tiny_model("llama", seed=5, vocab_size=V, logit_scale=8.0)   # sharp and different
    return target, drafter


@torch.no_grad()
def exact_joint(target, sampling):
    """P(x1, x2, x3) of the target's own sampling, by enumeration."""
    probs = {}
    for prefix_len in range(N_TOKENS):
        for prefix in itertools.product(range(V), repeat=prefix_len):
            logits = target(torch.tensor([PROMPT + list(prefix)])).logits[0, -1]
            probs[prefix] = sampling.probs(logits).double().numpy()
    joint = np.zeros([V] * N_TOKENS)
    for seq in itertools.product(range(V), repeat=N_TOKENS):
        joint[seq] = np.prod([probs[seq[:k]][seq[k]] for k in range(N_TOKENS)])
    return joint


def chi2_pvalue(samples, joint):
    observed = np.zeros(joint.size)
    for s in samples:
        observed[np.ravel_multi_index(tuple(s), joint.shape)] += 1
    expected = joint.ravel() * len(samples)
    big = expected >= 5                         # pool the rare cells into one
    obs = np.append(observed[big], observed[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return chisquare(obs, exp * obs.sum() / exp.sum()).pvalue

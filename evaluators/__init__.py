"""specsel evaluators: metrics, regret, replay measures, tables and plots (records in, never models or learners).

    records    round records on disk, acceptance matrices, replay exactness (replay_exact_of)
    lines      the study's query lines: complete batches, the per-run index
    replay     per-query measures on full-information records (fixed arms, oracles, regrets)
    costs      cost models of a setting (rounds, fitted step times)
    fullinfo   every fixed arm and the per-query oracle of a full-information run
    lossless   greedy outputs equal the autoregressive ones
    columns    the columns of a summary row
    summary    the study's summary rows, best fixed arms and acceptance targets
    offline    rows and curves from learners' replayed round counts
    report     tables, CSV/JSON and plots
    metrics    vLLM-style metrics of round records
"""

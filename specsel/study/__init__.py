"""The domain study: every selection rule on one mixed stream of domain prompts.

    python recipes/domain_eval.py --data-dir ../shared/data --domains math,humaneval,medqa --limit 30 --out results/
    specsel eval ...                     (the same command)

For every batch size in ``--bsz`` the same prompts, in the same batches, with the same seeds,
are decoded by

* phase 1, the full-information run: HedgeSpec in the ``drafter`` setting with
  ``feedback="full"`` (or a fixed arm with full feedback when HedgeSpec is not asked for).
  Its records hold every drafter's acceptance at every committed position, so the oracle
  (per-query best arm), the best fixed arm over the stream and every fixed arm's round count
  follow offline (``specsel.replay.fullinfo``), exactly for greedy decoding of replay-exact
  drafters; its query lines say which drafters those are (``"replay_exact"``);
* phase 2, interleaved batch by batch (rotating order, so machine drift spreads evenly):
  the autoregressive baseline, the best fixed arm(s) chosen from phase 1 (``drafter``: the
  exact best arm; ``joint``: the ``--fixed-candidates`` best by estimated cost, the fastest
  measured one is reported), and every learner of every setting (with the throughput
  objective, HedgeSpec scores lazily: each row's favourite drafter and the played ones,
  every drafter in refresh windows, specsel.learners.policy).

Every finished batch appends one JSON line per query to ``OUT/queries.jsonl`` in a single
write followed by fsync, keyed by (run, bsz, batch); ``--resume`` skips what is there (a torn
last line is cut off first), so an interrupted study loses nothing it finished. Learners are
numbered by stream position (``LearnerPolicy`` seeds per-query learners by it) and a
throughput learner's step-cost model is re-fed the stored rounds, so a resumed study plays
what the uninterrupted one would have played.

Outputs: the table (printed and ``table.txt``), ``summary.csv``, ``summary.json``,
``lossless.json``, ``queries.jsonl`` (per-query round records), ``config.json`` and the plots
``throughput_vs_bsz.png``, ``mat_per_domain.png``, ``regret_vs_arms.png``.

Modules: ``config`` (StudyConfig and its flags), ``store`` (queries.jsonl, config.json),
``plan`` (the runs), ``runner`` (run_study), ``pool`` (the drafters), ``items`` (the query
stream), ``cli`` (specsel eval), ``offline`` (learners replayed on full-information records),
``heldout`` (quick held-out MAT for recipes; import it directly, it loads the engine).
"""
from specsel.study.cli import add_eval_arguments, eval_command, main, run_eval
from specsel.study.config import StudyConfig, StudyError, config_from_args, parse_csv, parse_ints
from specsel.study.executor import Executor, Phase, RunSpec, stream_batches
from specsel.study.items import StudyItem, load_items
from specsel.study.plan import fullinfo_run
from specsel.study.pool import known_pool_names, load_pool, pool_weights
from specsel.study.runner import run_study
from specsel.study.store import ResultStore

__all__ = ["Executor", "Phase", "ResultStore", "RunSpec", "StudyConfig", "StudyError", "StudyItem",
           "add_eval_arguments", "config_from_args", "eval_command", "fullinfo_run", "known_pool_names",
           "load_items", "load_pool", "main", "parse_csv", "parse_ints", "pool_weights", "run_eval", "run_study",
           "stream_batches"]

"""The columns of a summary row and the order rows are listed in (tables, CSV, plots)."""
from __future__ import annotations

from specsel.core.runs import JOINT_BASELINES, ROUTER_LEARNERS, STUDY_LEARNERS

SUMMARY_COLUMNS = ("setting", "domain", "bsz", "learner", "mat", "tokens_per_s", "speedup", "regret", "pct_oracle")
EXTRA_COLUMNS = ("arm", "lossless", "queries", "new_tokens", "rounds", "wall_s", "prefill_s", "decode_tokens_per_s",
                 "regret_unit", "exact", "speedup_min", "speedup_max", "speedup_n", "repeats", "unreliable")
ROW_ORDER = ("autoregressive", "best_fixed", "oracle") + STUDY_LEARNERS + ROUTER_LEARNERS + JOINT_BASELINES


def new_row(setting, domain, bsz, learner, **kw) -> dict:
    """A row with every column (None = not available) and the given values."""
    row = dict.fromkeys(SUMMARY_COLUMNS + EXTRA_COLUMNS)
    row.update(setting=setting, domain=domain, bsz=bsz, learner=learner)
    row.update(kw)
    return row

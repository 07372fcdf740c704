"""The lossless check of a greedy study: every run's outputs equal the autoregressive ones."""
from __future__ import annotations

from typing import Sequence


def check_lossless(runs: dict[tuple[str, int], dict[str, dict]], bszs: Sequence[int]) -> dict:
    """Greedy: every run's tokens equal the autoregressive run's at the same batch size, and the
    autoregressive runs agree across batch sizes. Returns {"lossless", "checked", "by_run", "mismatches"}."""
    checked, mismatches = 0, []
    by_run: dict[tuple[str, int], bool] = {}
    ref0 = runs.get(("autoregressive", bszs[0]), {}) if bszs else {}
    for (run, bsz), lines in sorted(runs.items()):
        ref = ref0 if run == "autoregressive" else runs.get(("autoregressive", bsz), {})
        if run == "autoregressive" and bsz == bszs[0]:
            by_run[run, bsz] = True
            continue
        ok = True
        for qid, line in lines.items():
            if qid not in ref:
                continue
            checked += 1
            if line["tokens"] != ref[qid]["tokens"]:
                ok = False
                mismatches.append({"run": run, "bsz": bsz, "qid": qid})
        by_run[run, bsz] = ok
    return {"lossless": not mismatches, "checked": checked, "by_run": by_run, "mismatches": mismatches}

"""The main job: every selection rule on one mixed stream of domain prompts.

    python recipes/domain_eval.py --data-dir ../shared/data --domains math,humaneval,medqa --limit 30 --out results/

Same as `specsel eval`; see the specsel.study package for what runs and what is written.
"""
import sys

from specsel.study import main

if __name__ == "__main__":
    sys.exit(main())

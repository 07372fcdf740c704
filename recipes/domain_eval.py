"""The main job: every selection rule on one mixed stream of domain prompts (issue 5).

    python recipes/domain_eval.py --data-dir ../shared/data --domains math,humaneval,medqa --limit 30 --out results/

Same as `specsel eval`; see specsel/study.py for what runs and what is written.
"""
import os
import sys


from specsel.study import main

if __name__ == "__main__":
    sys.exit(main())

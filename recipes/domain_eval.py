"""The main job: every selection rule on one mixed stream of domain prompts (issue 5).

    python recipes/domain_eval.py --data-dir ../shared/data --domains math,humaneval,medqa --limit 30 --out results/

Same as `specsel eval`; see specsel/study.py for what runs and what is written.
"""
import os
import sys

# run as a script, recipes/ is sys.path[0] and `import drafters` would find recipes/drafters.py: drop it
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from specsel.study import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

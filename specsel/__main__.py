"""`python -m specsel ...` is the `specsel` command (launchers need it: `torchrun
--nproc_per_node 2 -m specsel eval ...`)."""
import sys

from specsel.cli import main

sys.exit(main())

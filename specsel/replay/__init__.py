"""Replay: the project's scientific instrument. Learners and fixed arms re-run offline on stored
full-information records, with no model (docs/design.md, "Learners", "Study").

    fixed       records-only measures of one query: every fixed arm's rounds, the per-query oracle,
                regrets (exact for greedy 0/1 records; one Monte-Carlo draw for sampling records)
    fullinfo    a full-information run's per-query acceptance matrices (FullInfo), every fixed arm
                of a setting on every query and the oracle (SettingEval), which drafters replay exactly
    simulate    one learner on one query's record, fed through the same FeedbackRouter as live
    learners    learners replayed per query as LearnerPolicy builds them live: rows, regret curves

Arms are written ``DRAFTER@GAMMA`` (specsel.core.arms.Arm); replay computes on their index form,
``ArmPair = (drafter index, gamma)`` (specsel.core.arms). `specsel replay` is specsel.cli.replay.
Import the modules directly: this face imports nothing, so the evaluators can read
``specsel.replay.fullinfo`` without importing a learner.
"""

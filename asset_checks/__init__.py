"""Asset checks, one module per stage. Blocking checks (ERROR severity) stop what is downstream in
the same run, and declarative automation waits for them to pass."""

from asset_checks.dataset_checks import (
    rlvr_dataset_size_and_leakage,
    srl_dataset_size_and_leakage,
    srl_reward_variance,
)
from asset_checks.deployment_checks import served_accuracy_holds
from asset_checks.encounter_checks import task_difficulty
from asset_checks.evaluation_checks import (
    guardrail_violation_rate,
    not_worse_than_incumbent,
)
from asset_checks.lore_checks import lore_schema_and_coverage
from asset_checks.rules_checks import rules_consistency
from asset_checks.trajectory_checks import trajectory_acceptance_and_coverage

CHECKS = [
    lore_schema_and_coverage,
    rules_consistency,
    task_difficulty,
    trajectory_acceptance_and_coverage,
    srl_dataset_size_and_leakage,
    rlvr_dataset_size_and_leakage,
    srl_reward_variance,
    not_worse_than_incumbent,
    guardrail_violation_rate,
    served_accuracy_holds,
]

"""Declarative automation: what makes an asset partition stale enough to re-run by itself."""

from dagster import AutomationCondition

# Run a species' partition when an upstream partition has a new version (or is newly missing), or when
# this asset's code version changed; never while a blocking check upstream is failing.
FRESH = (
    AutomationCondition.eager()
    | (
        AutomationCondition.code_version_changed()
        & ~AutomationCondition.any_deps_missing()
        & ~AutomationCondition.in_progress()
    )
) & AutomationCondition.all_deps_blocking_checks_passed()

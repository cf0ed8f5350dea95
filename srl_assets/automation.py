"""Declarative automation: what makes an asset partition stale enough to re-run by itself."""

from dagster import AssetKey, AssetSelection, AutomationCondition

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

# `served_drift` is observed only when live play falls behind (performance_sensor), so for a healthy species it
# is never observed, and a dependency never observed is "missing": under plain `eager()` it would hold the
# training chain back for good, and no lore or rule edit would ever retrain it (tests/test_retraining.py). It is
# a trigger, not an input: its observation requests a retrain, its absence holds nothing back.
SERVED_DRIFT = AssetSelection.assets(AssetKey("served_drift"))
RETRAINED = (
    AutomationCondition.eager().ignore(SERVED_DRIFT)
    | (
        AutomationCondition.any_deps_match(AutomationCondition.newly_updated()).allow(SERVED_DRIFT)
        & ~AutomationCondition.any_deps_missing().ignore(SERVED_DRIFT)
        & ~AutomationCondition.in_progress()
    )
    | (
        AutomationCondition.code_version_changed()
        & ~AutomationCondition.any_deps_missing().ignore(SERVED_DRIFT)
        & ~AutomationCondition.in_progress()
    )
) & AutomationCondition.all_deps_blocking_checks_passed()

"""Declarative automation: what makes an asset partition stale enough to re-run by itself."""

from functools import reduce
from operator import or_

from dagster import AssetKey, AssetSelection, AutomationCondition


def fresh(trigger_only: AssetSelection | None = None) -> AutomationCondition:
    """Run a species' partition when an upstream partition has a new version (or is newly missing), or when this
    asset's code version changed; never while a blocking check upstream is failing.

    `trigger_only`: dependencies whose update requests a run but whose absence holds nothing back. For an
    observable source that is observed only on an event, "never observed" is "missing", which would hold
    `eager()` back for good."""
    eager, deps_missing = AutomationCondition.eager(), AutomationCondition.any_deps_missing()
    if trigger_only is not None:
        eager, deps_missing = eager.ignore(trigger_only), deps_missing.ignore(trigger_only)
    ready = ~deps_missing & ~AutomationCondition.in_progress()
    triggers = [eager, AutomationCondition.code_version_changed() & ready]
    if trigger_only is not None:
        triggers.append(
            AutomationCondition.any_deps_match(AutomationCondition.newly_updated()).allow(trigger_only) & ready
        )
    return reduce(or_, triggers) & AutomationCondition.all_deps_blocking_checks_passed()


FRESH = fresh()
# `served_drift` is observed only when live play falls behind (performance_sensor): a trigger of retraining, not
# an input. Under plain FRESH no lore or rule edit would ever retrain `srl_checkpoint` (tests/test_retraining.py).
RETRAINED = fresh(trigger_only=AssetSelection.assets(AssetKey("served_drift")))

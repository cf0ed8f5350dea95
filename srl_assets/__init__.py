"""The Dagster code location of srl-forge: assets, partitions, sensors, automation, resources."""

import warnings

from dagster import BetaWarning, PreviewWarning

# dagster is pinned exactly (pyproject.toml) and the beta/preview APIs used here (observable sources,
# data versions on outputs, partitioned checks) are chosen: their warnings, once per step, would bury
# what a run has to say.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)

"""The Dagster code location of srl-forge: assets, partitions, sensors, automation, resources."""

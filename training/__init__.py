"""The ML library of srl-forge: step datasets, rewards, SRL/RLVR trainers, model loading, job entry
points. No Dagster import: the same code runs in-process, from a CLI or inside a SageMaker job."""

"""The ML library of srl-forge: step datasets, rewards, SRL/RLVR trainers, model loading, job entry
points. No Dagster import: the same code runs in-process, from a CLI or inside a SageMaker job."""

import logging

# bitsandbytes logs on import that the optional `kernels` package is missing; its CPU 4-bit path runs without it
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

"""One progress bar per long stage: the libraries' own per-load bars ("Loading weights", datasets' per-map
bars) take a second each and only bury the training and generation bars, in a terminal and in run logs."""

from __future__ import annotations


def quiet_loading_bars() -> None:
    """Turn the per-load bars of transformers (and the hub) and datasets off for this process."""
    import datasets
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    datasets.disable_progress_bars()

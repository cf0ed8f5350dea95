"""srl-forge domain logic: lore, semantic memory, game state, the rules engine and teachers.

Nothing in this package imports Dagster: it is importable and testable on its own.
"""

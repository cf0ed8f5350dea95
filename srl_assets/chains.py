"""A species' chains of assets, in order, by name: what the tests, the benchmarks and tools select."""

# lore to the training datasets: no model is trained
DATA_CHAIN = [
    "lore",
    "rules",
    "player_interactions",
    "encounters",
    "expert_trajectories",
    "srl_dataset",
    "rlvr_dataset",
]
# the product: on through SRL, SRL→RLVR, evaluation and deployment (the ablations and personas are apart)
PRODUCT_CHAIN = [*DATA_CHAIN, "srl_checkpoint", "rlvr_checkpoint", "evaluation", "deployed_adapter"]

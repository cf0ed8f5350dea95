"""The pieces the decision is learned with: recipes, the completion-only loss, the learning curve, the
expert answer's thought, the feature-classifier reference and the step-by-step rollout's answer."""

import pytest
import torch

import training.grpo_runner as runner
from srl_assets.resources import TrainingResource
from srl_forge.errors import InputError
from srl_forge.policy import parse_decision
from srl_forge.trajectory import Trajectory, TrajectoryStep
from tests.helpers import make_encounter
from training.evaluation import _answer_from_steps
from training.feature_classifier import FeatureClassifier, encounter_features
from training.grpo_runner import RECIPES, GRPOTrainingConfig, recipe, sft_steps
from training.learning_curve import probe_steps
from training.model_loading import load_base_model
from training.rlvr import RLVRConfig, decision_text
from training.sft import completion_loss
from training.srl import SRLConfig


@pytest.mark.parametrize("budget", ["tiny", "quick", "standard", "full"])
def test_every_stage_of_every_recipe_is_a_valid_config(budget):
    for stage in ("srl", "rlvr", "rlvr_only", "sft_only", "persona"):
        config = (SRLConfig if stage == "srl" else RLVRConfig).for_budget(budget, stage)
        assert config.sft_epochs > 0
    assert RLVRConfig.for_budget(budget, "sft_only").max_steps == 0


def test_overrides_win_over_the_recipe():
    assert RLVRConfig.for_budget("standard", "rlvr", sft_epochs=0.5).sft_epochs == 0.5
    assert RLVRConfig.for_budget("standard", "rlvr").sft_epochs == recipe("standard", "rlvr")["sft_epochs"]


def test_quantization_is_a_recipe_setting_the_training_resource_may_override(tmp_path, monkeypatch):
    (tmp_path / "quick.yaml").write_text("defaults: {sft_batch_size: 8}\nsrl: {quantization: 4bit}\nrlvr: {}\n")
    monkeypatch.setattr(runner, "RECIPES", tmp_path)
    recipe_only = TrainingResource(work_root=str(tmp_path), model_cache=str(tmp_path))
    assert (recipe_only.config("srl").quantization, recipe_only.config("rlvr").quantization) == ("4bit", "none")
    everywhere = TrainingResource(work_root=str(tmp_path), model_cache=str(tmp_path), quantization="8bit")
    assert (everywhere.config("srl").quantization, everywhere.config("rlvr").quantization) == ("8bit", "8bit")
    per_stage = TrainingResource(
        work_root=str(tmp_path), model_cache=str(tmp_path), quantization="8bit", rlvr_overrides={"quantization": "none"}
    )
    assert per_stage.config("rlvr").quantization == "none"  # an explicit override, no collision
    with pytest.raises(Exception, match="field 'quantization': '2bit' is not one of"):
        TrainingResource(work_root=str(tmp_path), model_cache=str(tmp_path), quantization="2bit")
    (tmp_path / "quick.yaml").write_text("srl: {quantization: 3bit}\n")
    with pytest.raises(InputError, match=r"quick.yaml: field 'srl.quantization'"):
        SRLConfig.for_budget("quick", "srl")


def test_a_bad_recipe_names_the_file_and_the_field(tmp_path, monkeypatch):
    (tmp_path / "quick.yaml").write_text(
        "defaults: {sft_batch_size: 8}\nrlvr: {sft_epoch: 1.0}\nsrl: {sft_epochs: -1}\n"
    )
    monkeypatch.setattr(runner, "RECIPES", tmp_path)
    with pytest.raises(InputError, match=r"quick.yaml: field 'rlvr.sft_epoch': not a training setting"):
        RLVRConfig.for_budget("quick", "rlvr")
    with pytest.raises(InputError, match=r"quick.yaml: field 'srl.sft_epochs': Input should be greater than"):
        SRLConfig.for_budget("quick", "srl")
    with pytest.raises(InputError, match="quick.yaml: field 'persona': the recipe has no 'persona' section"):
        RLVRConfig.for_budget("quick", "persona")
    with pytest.raises(InputError, match="unknown training budget 'huge'"):
        RLVRConfig.for_budget("huge", "rlvr")
    assert RECIPES.name == "recipes"


def test_supervised_steps_and_probe_points():
    assert sft_steps(300, 3.0, 8) == 113 and sft_steps(300, 0.0, 8) == 0 and sft_steps(0, 2.0, 8) == 0
    assert probe_steps(113, 3) == {38, 76, 113} and probe_steps(2, 1) == {2}
    assert probe_steps(0, 3) == set() and probe_steps(10, 0) == set()


def test_completion_loss_equals_the_full_logits_loss(tiny_policy):
    """The supervised phase computes logits only from the earliest completion token on: the same loss."""

    model = load_base_model(tiny_policy)
    torch.manual_seed(0)
    ids = torch.randint(0, 100, (3, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 7:] = ids[0, 7:]
    labels[1, 4:9] = ids[1, 4:9]  # right padding after the completion
    labels[2, 10:] = ids[2, 10:]
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    loss, count = completion_loss(model, {"input_ids": ids, "attention_mask": mask, "labels": labels})
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    full = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    assert count == 5 + 5 + 2
    assert torch.allclose(loss, full, atol=1e-5)


def test_the_expert_answer_copies_the_facts_names_the_rules_then_acts(tmp_path):
    steps = (
        TrajectoryStep(title="ASSESS", thought="t", action="Night."),
        TrajectoryStep(title="APPLY RULE", thought="t", action="vampire.garlic (priority 60): forbid feed."),
        TrajectoryStep(title="APPLY RULE", thought="t", action="world.mortal_wound (priority 40): prefer flee."),
        TrajectoryStep(
            title="DECIDE", thought="I choose flee: world.mortal_wound puts it first.", action="ACTION: flee"
        ),
        TrajectoryStep(title="SPEAK", thought="t", action='SAY: "The night remembers you, mortal."'),
    )
    text = decision_text(Trajectory(encounter_id="e", species="vampire", steps=steps))
    assert text.startswith(
        "<think>Night. vampire.garlic (priority 60): forbid feed. world.mortal_wound (priority 40): prefer flee."
        "</think>"
    )
    assert parse_decision(text) == ("flee", "The night remembers you, mortal.")
    with pytest.raises(ValueError, match="encounter e: no ASSESS step"):
        decision_text(Trajectory(encounter_id="e", species="vampire", steps=steps[1:]))


def test_feature_classifier_learns_a_rule_from_features():
    day = [make_encounter("vampire", game={"time_of_day": t}) for t in ("dawn", "day")] * 3
    night = [
        make_encounter("vampire", game={"time_of_day": t}, npc={"hunger": h})
        for t in ("dusk", "night")
        for h in (0.1, 0.5, 0.9)
    ]
    classifier = FeatureClassifier().fit(day + night, [("seek_shelter",)] * 6 + [("observe",)] * 6)
    assert classifier.predict([make_encounter("vampire", game={"time_of_day": "day"})]) == ["seek_shelter"]
    assert classifier.predict([]) == []
    features = encounter_features(make_encounter("vampire", player={"items": ("garlic",)}))
    assert features["item=garlic"] == 1.0 and features["time_of_day"] == "night"
    with pytest.raises(ValueError, match="no train encounter"):
        FeatureClassifier().fit(day, [()] * len(day))


def test_a_stepwise_rollout_is_an_answer_only_when_it_decides_once_and_ends_speaking():
    decided = [
        "1. **ASSESS** Night.",
        "2. **APPLY RULE** vampire.garlic (priority 60): forbid feed.",
        "3. **DECIDE** ACTION: flee",
        '4. **SPEAK** SAY: "Begone, mortal."',
    ]
    answer = _answer_from_steps(decided)
    assert parse_decision(answer) == ("flee", "Begone, mortal.") and "vampire.garlic" in answer.split("</think>")[0]
    assert _answer_from_steps(decided[:3]) is None  # never spoke
    assert _answer_from_steps(decided[:3] + ["4. **DECIDE** ACTION: feed", decided[3]]) is None  # decided twice


def test_quick_defaults_are_the_config_defaults():
    """The config's field defaults are documented as the quick budget's: keep them in step with the recipe."""
    quick = recipe("quick", "rlvr")
    defaults = GRPOTrainingConfig()
    assert all(getattr(defaults, k) == v for k, v in quick.items() if k in ("sft_batch_size", "sft_learning_rate"))

"""What the benchmarks record beside their numbers."""

import subprocess

import pytest

from bench.machine import LEARNING_INPUTS, machine, training_code_version
from bench.sweep import SWEEPS, expert_answer, setting_key
from bench.training_speed import measure, to_markdown
from srl_forge.policy import parse_decision, render_answer, split_thinking
from srl_forge.trajectory import Trajectory, TrajectoryStep
from tests.helpers import make_encounter


def test_the_training_code_version_changes_with_what_trains_and_only_with_it(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    for path in LEARNING_INPUTS:
        target = tmp_path / path / "x.py" if "." not in path else tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("a = 1\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "x.md").write_text("first\n")
    git("add", "-A")
    git("commit", "-qm", "one")
    first = training_code_version("HEAD", tmp_path)
    assert len(first) == 12 and not first.endswith("-dirty")

    (tmp_path / "docs" / "x.md").write_text("second\n")
    git("commit", "-qam", "docs only")
    assert training_code_version("HEAD", tmp_path) == first == training_code_version("HEAD~1", tmp_path)

    (tmp_path / "training" / "x.py").write_text("a = 2\n")
    assert training_code_version("HEAD", tmp_path) == first + "-dirty"  # not committed yet
    git("commit", "-qam", "a training change")
    assert training_code_version("HEAD", tmp_path) != first
    assert training_code_version("HEAD~1", tmp_path) == first


def _zombie_trajectory(with_assess: bool = True):
    steps = (
        *(
            [TrajectoryStep(title="ASSESS", thought="t", action="Night; I am zombie, hunger 0.59.")]
            if with_assess
            else []
        ),
        TrajectoryStep(title="APPLY RULE", thought="t", action="zombie.hunger_pursuit (priority 70): prefer pursue."),
        TrajectoryStep(title="DECIDE", thought="t", action="ACTION: pursue"),
        TrajectoryStep(title="SPEAK", thought="t", action='SAY: "Uuh... braains..."'),
    )
    return Trajectory(encounter_id="e1", species="zombie", steps=steps)


def test_the_sweep_thoughts_copy_the_facts_before_the_recipe_rules_and_still_parse():
    encounter = make_encounter("zombie", npc={"hunger": 0.59}, player={"items": ("torch",)})
    rules = "zombie.hunger_pursuit (priority 70): prefer pursue."
    for thought, opening in (("rules", rules), ("assess", "Night; I am zombie, hunger 0.59. "), ("evidence", "")):
        text = expert_answer(_zombie_trajectory(), thought, encounter)
        thinking = split_thinking(text)[0]
        assert thinking.startswith(opening) and thinking.endswith(rules)
        assert parse_decision(text) == ("pursue", "Uuh... braains...")
    evidence = split_thinking(expert_answer(_zombie_trajectory(), "evidence", encounter))[0]
    assert "hunger 0.59" in evidence and "items torch" in evidence and "weather" in evidence
    with pytest.raises(ValueError, match="e1: no ASSESS step"):
        expert_answer(_zombie_trajectory(with_assess=False), "assess", encounter)
    # one trained adapter scored at two answer budgets: the budget is not part of what was trained
    short, long = (s for s in SWEEPS["evidence-thought"][1] if s.thought == "assess")
    assert (short.score_tokens, long.score_tokens) == (96, 192) and setting_key(short) == setting_key(long)


def test_the_training_speed_benchmark_times_each_way_of_taking_a_step_and_marks_the_recipes(tiny_policy, tmp_path):
    rows = [
        {
            "prompt": [{"role": "system", "content": "You are a vampire."}, {"role": "user", "content": f"Guest {i}."}],
            "completion_text": render_answer("Night; a guest.", "charm", "Welcome, my dear guest."),
        }
        for i in range(8)
    ]
    out = measure(rows, tiny_policy, tmp_path, warmup=1, steps=2, answers=2, compile_too=False)
    here = machine()
    assert [s["setting"] for s in out["supervised"]] == ["TRL loss, float32", "completion logits, float32"] + (
        ["completion logits, bf16"] if here["bf16"] else []
    )
    for step in out["supervised"]:
        assert step["timed_steps"] == 2 and step["seconds_per_step"] > 0 and step["tokens_per_second"] > 0
    assert [g["answers"] for g in out["generation"]] == [2] * len(out["generation"])
    text = to_markdown({"species": "vampire", "date": "2026-12-08", "machine": here, "commit": "abc1234", **out})
    assert f"completion logits, {'bf16' if here['bf16'] else 'float32'} (the recipe here)" in text
    assert text.count("(the recipe here)") == 1

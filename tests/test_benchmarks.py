"""What the benchmarks record beside their numbers."""

import subprocess

from bench.machine import LEARNING_INPUTS, training_code_version


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

"""Two species materializing at once, in two processes, on the same embedded stores (DuckDB files for
the game state and the semantic memory, the local artifact folder, a SQLite Dagster instance): both
finish, neither corrupts nor locks out the other (each store operation is a short transaction and a
lock held by the other process is waited out)."""

import subprocess
import sys
import textwrap

from dagster import DagsterInstance

from srl_forge.lore import load_species_lore
from srl_forge.memory import open_lore_store

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dagster import DagsterInstance, materialize
    from srl_assets.definitions import ASSETS, build_definitions
    from srl_assets.partitions import register_species

    project, home, species = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    defs = build_definitions(home=home, lore_root=project / "lore", rules_root=project / "rules",
                             game_state_seed=project / "game_state" / "seed.yaml")
    instance = DagsterInstance.get()
    register_species(instance, project / "lore", [species])
    result = materialize(ASSETS, partition_key=species, instance=instance, resources=defs.resources,
                         selection=["lore", "rules", "player_interactions", "encounters"], raise_on_error=False)
    print("SUCCESS" if result.success else "FAILED")
""")


def test_two_species_at_once_on_the_embedded_stores(project_copy, tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    DagsterInstance.from_config(str(dagster_home)).dispose()  # created once, as `dagster dev` or the daemon does
    home = tmp_path / "home"
    env = {
        "DAGSTER_HOME": str(dagster_home),
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(project_copy), str(home), species],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for species in ("ghoul", "lich")
    ]
    outputs = [run.communicate(timeout=900) for run in runs]
    for (out, err), run in zip(outputs, runs):
        assert run.returncode == 0 and out.strip().endswith("SUCCESS"), err[-3000:]
    memory = open_lore_store(str(home / "memory.duckdb"))
    for species in ("ghoul", "lich"):  # both species' lore is in the one memory file
        assert memory.has_version(species, load_species_lore(project_copy / "lore", species).version)

"""The built wheel is enough on its own: it carries the card template (dataset_cards/ at the top of the repo,
installed as advgen/dataset_cards) and renders a card from outside the source tree.

Cost: ~10 s (one `pip wheel --no-build-isolation`, one card rendered in a subprocess).
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO, write_yaml


def test_wheel_carries_the_card_template_and_renders_outside_the_repo(tmp_path, tiny_model):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "whl"), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    wheel, = (tmp_path / "whl").glob("advgen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "advgen/dataset_cards/dataset_card.md.j2" in names
    assert not [n for n in names if n.startswith(("tests/", "recipes/", "dataset_cards/"))]

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)      # a wheel is a zip laid out as site-packages
    from advgen.generate import generate
    from advgen.recipe import GenerateRecipe, load_recipe

    recipe = write_yaml(tmp_path / "gen.yaml", {
        "name": "pkg_det", "dataset": "d_det", "source": {"kind": "digits", "limit": 8},
        "model": {"checkpoint": str(tiny_model)},
        "attack": {"norm": "l2", "eps": 1.0, "step_size": 0.5, "steps": 1},
        "output": {"dir": str(tmp_path / "out")}, "batch_size": 8, "seed": 0})
    out = generate(load_recipe(recipe, GenerateRecipe))
    env = {**os.environ, "PYTHONPATH": str(site)}    # the installed copy only: no repo on the path
    p = subprocess.run([sys.executable, "-c", "import advgen.cards as c, sys; print(c.__file__); "
                        "sys.exit(c.main([sys.argv[1], '-o', sys.argv[2]]))", str(out), str(tmp_path / "card.md")],
                       cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(str(site / "advgen" / "cards.py"))
    card = (tmp_path / "card.md").read_text()
    assert card.startswith("---\n") and "config_name: d_det" in card

"""Recipes load strictly: unknown keys, wrong types and bad values fail at load time with the key named."""

import sys
from pathlib import Path

import pytest
import yaml

from advgen.recipe import (AttackConfig, GenerateRecipe, RecipeError, TrainRecipe, dump_recipe, from_dict,
                           load_recipe)
from tests.conftest import CIFAR, REPO, advgen, write_yaml

RECIPES = sorted((REPO / "recipes").glob("**/*.yaml"))


def base(tmp_path, tiny_ckpt="x.safetensors"):
    ckpt = tmp_path / tiny_ckpt
    ckpt.write_bytes(b"")
    return {"name": "r", "dataset": "d_det", "source": {"kind": "digits"}, "model": {"checkpoint": str(ckpt)},
            "attack": {"eps": 1.0}}


def load(tmp_path, data, overrides=()):
    return load_recipe(write_yaml(tmp_path / "r.yaml", data), GenerateRecipe, overrides)


def test_unknown_key_names_it_and_lists_valid_ones(tmp_path):
    data = base(tmp_path)
    data["attack"]["epsilon"] = 0.5
    with pytest.raises(RecipeError) as e:
        load(tmp_path, data)
    msg = str(e.value)
    assert "'attack.epsilon'" in msg and "attack" in msg
    for valid in ("eps", "step_size", "steps", "targets", "norm"):
        assert valid in msg


def test_unknown_top_level_key(tmp_path):
    data = base(tmp_path)
    data["outputs"] = {}
    with pytest.raises(RecipeError, match=r"unknown key 'outputs'.*valid keys: name, source, model"):
        load(tmp_path, data)


@pytest.mark.parametrize("key,value,pattern", [
    ("eps", -0.5, r"attack\.eps: must be > 0, got -0\.5"),
    ("targets", "random", r"attack\.targets: unknown value 'random'; choose one of 'rand', 'det'"),
    ("steps", 2.5, r"attack\.steps: expected an integer, got 2\.5"),
    ("norm", "l1", r"attack\.norm: unknown value 'l1'"),
    ("keep_best", "yes", r"attack\.keep_best: expected true or false, got 'yes'"),
])
def test_bad_values_are_quoted(tmp_path, key, value, pattern):
    data = base(tmp_path)
    data["attack"][key] = value
    with pytest.raises(RecipeError, match=pattern):
        load(tmp_path, data)


@pytest.mark.parametrize("override,pattern", [
    ("seed=-1", r"seed: must be >= 0, got -1"),
    ("attack.eps=.inf", r"attack\.eps: expected a finite number, got inf"),
    ("attack.step_size=.nan", r"attack\.step_size: expected a finite number, got nan"),
    ("attack.eps=1.0e+999", r"attack\.eps: expected a finite number, got inf"),
    ("output.dir=", r"output\.dir: is empty; give the output a directory of its own"),
])
def test_values_json_cannot_hold_or_the_run_cannot_use_are_refused(tmp_path, override, pattern):
    with pytest.raises(RecipeError, match=pattern):
        load(tmp_path, base(tmp_path), [override])


def test_train_recipe_seed_must_not_be_negative(tmp_path):
    with pytest.raises(RecipeError, match=r"seed: must be >= 0, got -3"):
        load_recipe(write_yaml(tmp_path / "t.yaml", {"name": "t", "source": {"kind": "digits"}, "seed": -3}),
                    TrainRecipe)


def test_missing_paths(tmp_path):
    data = base(tmp_path)
    data["model"] = {"checkpoint": str(tmp_path / "nope.safetensors")}
    with pytest.raises(RecipeError, match=r"model\.checkpoint: file '.*nope\.safetensors' does not exist"):
        load(tmp_path, data)
    data = base(tmp_path)
    data["source"] = {"kind": "hf", "path": "./no_such_dir"}
    with pytest.raises(RecipeError, match=r"source\.path: local dataset './no_such_dir' does not exist"):
        load(tmp_path, data)
    with pytest.raises(RecipeError, match=r"recipe file '.*missing\.yaml' does not exist"):
        load_recipe(tmp_path / "missing.yaml", GenerateRecipe)


def test_missing_required_and_dataset_attack_mismatch(tmp_path):
    data = base(tmp_path)
    del data["source"]
    with pytest.raises(RecipeError, match=r"source: missing required key"):
        load(tmp_path, data)
    data = base(tmp_path)
    data["attack"]["targets"] = "rand"
    with pytest.raises(RecipeError, match=r"attack\.targets: dataset 'd_det' needs targets 'det', got 'rand'"):
        load(tmp_path, data)


def test_dotted_overrides(tmp_path):
    r = load(tmp_path, base(tmp_path), ["attack.eps=0.25", "attack.steps=7", "output.npy=true",
                                        "source.limit=10"])
    assert r.attack.eps == 0.25 and r.attack.steps == 7 and r.output.npy is True and r.source.limit == 10
    with pytest.raises(RecipeError, match=r"override 'attack\.eps' is not KEY=VALUE"):
        load(tmp_path, base(tmp_path), ["attack.eps"])
    with pytest.raises(RecipeError, match=r"unknown key 'attack\.epz'"):
        load(tmp_path, base(tmp_path), ["attack.epz=1"])


def test_resolved_recipe_round_trips(tmp_path):
    r = load(tmp_path, base(tmp_path))
    dump_recipe(r, tmp_path / "resolved.yaml")
    data = yaml.safe_load((tmp_path / "resolved.yaml").read_text())
    assert data["attack"]["steps"] == 100 and data["attack"]["step_size"] == 0.1   # paper defaults filled in
    assert from_dict(GenerateRecipe, data) == r


def test_paper_defaults():
    a = AttackConfig()
    assert (a.norm, a.eps, a.step_size, a.steps, a.random_start) == ("l2", 0.5, 0.1, 100, False)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_load(path):
    data = yaml.safe_load(path.read_text())
    if "../shared/" in path.read_text() and not CIFAR.is_dir():
        pytest.skip("offline CIFAR-10 copy (../shared/data/cifar10) not beside this checkout")
    if path.name.startswith("reproduce_"):
        from advgen.reproduce import load_pipeline

        recipe = load_pipeline(path).recipe           # and every stage recipe it chains
    elif path.name.startswith("verify") or "datasets" in data:
        from advgen.verify import VerifyRecipe as cls
        recipe = load_recipe(path, cls)
    else:
        cls = GenerateRecipe if "dataset" in data else TrainRecipe
        recipe = load_recipe(path, cls)
    # recipes/fast/d_det.yaml is named fast_d_det
    assert recipe.name == (path.stem if path.parent.name == "recipes" else f"{path.parent.name}_{path.stem}")


def test_cli_reports_one_line_error_and_nonzero_exit(tmp_path):
    data = base(tmp_path)
    data["attack"]["eps"] = -1
    p = advgen("generate", write_yaml(tmp_path / "bad.yaml", data), check=False)
    assert p.returncode == 2
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "attack.eps: must be > 0, got -1" in lines[0], p.stderr
    assert not Path("runs/r").exists()

"""Recipes load strictly: unknown keys, wrong types and bad values fail at load time with the key named."""

import dataclasses
import sys
from pathlib import Path

import pytest
import yaml

from advgen.recipe import (GenerateRecipe, InversionConfig, PGDConfig, RecipeError, TrainRecipe, dump_recipe,
                           from_dict, load_recipe, saved_differences)
from tests.conftest import CIFAR, REPO, write_yaml

# transfer recipes (and the schema they load into) are tests/test_transfer.py's
RECIPES = sorted(p for p in (REPO / "recipes").glob("**/*.yaml") if not p.name.startswith("transfer_"))


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
    for valid in ("eps", "step_size", "steps", "norm", "random_start", "keep_best"):
        assert valid in msg


def test_unknown_top_level_key(tmp_path):
    data = base(tmp_path)
    data["outputs"] = {}
    with pytest.raises(RecipeError, match=r"unknown key 'outputs'.*valid keys: name, source, model"):
        load(tmp_path, data)


@pytest.mark.parametrize("key,value,pattern", [
    ("eps", -0.5, r"attack\.eps: must be > 0, got -0\.5"),
    ("targets", "rand", r"unknown key 'attack\.targets'; valid keys of attack: norm, eps"),     # d_det decides
    ("kind", "pgd", r"unknown key 'attack\.kind'; valid keys of attack: norm, eps"),
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


def test_missing_required_key(tmp_path):
    data = base(tmp_path)
    del data["source"]
    with pytest.raises(RecipeError, match=r"source: missing required key"):
        load(tmp_path, data)


@pytest.mark.parametrize("dataset, attack_class, targets", [("d_det", PGDConfig, "det"), ("d_rand", PGDConfig, "rand"),
                                                            ("d_robust", InversionConfig, None),
                                                            ("d_nonrobust", InversionConfig, None)])
def test_the_dataset_alone_decides_the_attack(tmp_path, dataset, attack_class, targets):
    data = dict(base(tmp_path), dataset=dataset, attack={"steps": 7})
    r = load(tmp_path, data)
    assert type(r.attack) is attack_class and r.attack.steps == 7 and r.targets == targets
    del data["attack"]                                   # no block: that attack's defaults
    assert load(tmp_path, data).attack == attack_class()
    other = {"eps": 1.0} if attack_class is InversionConfig else {"x0": "noise"}     # the other kind's key
    with pytest.raises(RecipeError, match=rf"unknown key 'attack\.{next(iter(other))}'; valid keys of attack: "):
        load(tmp_path, dict(data, attack=other))
    with pytest.raises(RecipeError, match="attack: dataset 'd_robust' is made with InversionConfig, not PGDConfig"):
        GenerateRecipe(name="x", source=r.source, model=r.model, dataset="d_robust", attack=PGDConfig()).validate()


def test_an_output_made_before_attack_kind_and_targets_were_implied_still_matches(tmp_path):
    """A recipe.yaml / checkpoint JSON written by the schema that spelled out attack.kind and attack.targets (and
    x0 / normalize_loss on PGD) is the same recipe: those keys changed nothing."""
    r = load(tmp_path, dict(base(tmp_path), dataset="d_rand"))
    saved = yaml.safe_load(yaml.safe_dump(dataclasses.asdict(r)))
    saved["attack"].update(kind="pgd", targets="rand", x0="train", normalize_loss=False)
    assert saved_differences(saved, r) == []
    saved["attack"]["eps"] = 2.0
    assert saved_differences(saved, r) == ["attack.eps: 2.0 -> 1.0"]


def test_an_output_made_before_a_defaulted_field_existed_still_matches(tmp_path):
    """A recipe.yaml written before `deterministic` and `source.test_limit` were added (it lacks them) is the same
    recipe while the new fields keep their defaults, and a different one once they do not."""
    r = load(tmp_path, dict(base(tmp_path), dataset="d_det"))
    saved = yaml.safe_load(yaml.safe_dump(dataclasses.asdict(r)))
    del saved["deterministic"], saved["source"]["test_limit"]
    assert saved_differences(saved, r) == []
    assert saved_differences(saved, dataclasses.replace(r, deterministic=False)) == ["deterministic: True -> False"]


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
    a = PGDConfig()
    assert (a.norm, a.eps, a.step_size, a.steps, a.random_start) == ("l2", 0.5, 0.1, 100, False)
    i = InversionConfig()
    assert (i.step_size, i.x0, i.normalize_loss) == (0.1, "train", False)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_load(path):
    data = yaml.safe_load(path.read_text())
    if "../shared/" in path.read_text() and not CIFAR.is_dir():
        pytest.skip("offline CIFAR-10 copy (../shared/data/cifar10) not beside this checkout")
    if path.name.startswith("reproduce_"):
        from advgen.reproduce import load_pipeline

        recipe = load_pipeline(path).recipe           # and every stage recipe it chains
    elif path.name.startswith("verify") or "datasets" in data:
        from advgen.recipe import VerifyRecipe

        recipe = load_recipe(path, VerifyRecipe)
    else:
        cls = GenerateRecipe if "dataset" in data else TrainRecipe
        recipe = load_recipe(path, cls)
    # recipes/fast/d_det.yaml is named fast_d_det
    assert recipe.name == (path.stem if path.parent.name == "recipes" else f"{path.parent.name}_{path.stem}")


def test_cli_reports_one_line_error_and_nonzero_exit(tmp_path, capsys):
    from advgen.cli import main

    data = base(tmp_path)
    data["attack"]["eps"] = -1
    capsys.readouterr()
    assert main(["generate", str(write_yaml(tmp_path / "bad.yaml", data))]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "attack.eps: must be > 0, got -1" in lines[0], lines
    assert not Path("runs/r").exists()


def test_shipped_recipes_by_name_from_any_directory(tmp_path, monkeypatch):
    """`advgen generate digits_det` outside the repo: the name finds the shipped recipe, and the recipe's own
    relative paths (its train recipe) are taken relative to the recipe file, not the working directory."""
    monkeypatch.chdir(tmp_path)
    for name in ("digits_det", "digits_det.yaml", "fast/d_det"):
        r = load_recipe(name, GenerateRecipe, ["source.path=" + str(CIFAR)] if name.startswith("fast") else [])
        assert r.dataset == "d_det"
    r = load_recipe("digits_det", GenerateRecipe)
    assert Path(r.model.train_recipe) == REPO / "recipes" / "digits_standard.yaml"
    assert r.output.dir == "runs/digits_det"                      # outputs stay relative to the working directory
    with pytest.raises(RecipeError, match=r"'digits' does not exist and is not a recipe shipped with advgen "
                                          r"\(did you mean digits_det, "):
        load_recipe("digits", GenerateRecipe)
    with pytest.raises(RecipeError, match=r"recipe file '\.\./digits_det' does not exist"):
        load_recipe("../digits_det", GenerateRecipe)             # names stay inside the shipped recipes


def test_a_recipes_relative_checkpoint_is_found_next_to_it(tmp_path, monkeypatch, tiny_model):
    (tmp_path / "proj" / "models").mkdir(parents=True)
    for suffix in (".safetensors", ".json"):
        (tmp_path / "proj" / "models" / f"m{suffix}").write_bytes(tiny_model.with_suffix(suffix).read_bytes())
    recipe = write_yaml(tmp_path / "proj" / "r.yaml", {**base(tmp_path), "model": {"checkpoint": "models/m.safetensors"}})
    monkeypatch.chdir(tmp_path)                                   # not the recipe's directory
    r = load_recipe(recipe, GenerateRecipe)
    assert Path(r.model.checkpoint) == tmp_path / "proj" / "models" / "m.safetensors"


def test_a_block_of_a_mapping_set_to_null_is_left_out():
    """`verify.datasets.d_det_leak=null` drops that training set (a pipeline's smaller variants leave sets out)."""
    from advgen.recipe import VerifyRecipe

    path = REPO / "recipes" / "fast" / "verify.yaml"
    full = load_recipe(path, VerifyRecipe)
    fewer = load_recipe(path, VerifyRecipe, ["datasets.d_det_leak=null", "datasets.d_rand_leak=null"])
    assert set(full.datasets) - set(fewer.datasets) == {"d_det_leak", "d_rand_leak"}
    with pytest.raises(RecipeError, match="'d_robust' is not a dataset of this recipe"):
        load_recipe(path, VerifyRecipe, ["datasets.d_robust=null"])       # the orderings still name it
    with pytest.raises(RecipeError, match="source"):
        load_recipe(path, VerifyRecipe, ["source=null"])                    # a required block is not a mapping entry

"""`advgen transfer` (Section 3.3, Figure 3) end to end on a tiny digits D̂det, the new architectures, the
correlation and the recipe's errors (seconds, CPU).

The committed runs are recipes/transfer_digits.yaml and recipes/transfer_cifar_cpu.yaml (minutes)."""

import json
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import REPO, advgen, make_det_set, write_yaml

ARCHS = {"small": {"arch": "small_cnn", "width": 8, "feature_dim": 16},
         "mlp": {"arch": "mlp", "width": 8, "feature_dim": 16},
         "gap": {"arch": "gap_cnn", "width": 8, "feature_dim": 16}}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory, tiny_model) -> Path:
    """D̂det of 80 digits (3 PGD steps against the session's tiny model), made by the real `advgen generate`."""
    return make_det_set(tmp_path_factory.mktemp("tiny_transfer_set"), tiny_model, limit=80, shard_size=40)


def transfer_recipe(path: Path, data: Path, model: Path, report_dir: Path, **over) -> Path:
    recipe = {
        "name": "t_transfer", "source": {"kind": "digits", "limit": 150},   # D: 150 train digits, test: 150
        "dataset": str(data), "source_model": str(model),
        "attack": {"kind": "pgd", "norm": "l2", "eps": 1.5, "step_size": 0.3, "steps": 5, "targets": "det"},
        "transfer_limit": 60, "count": "fooled", "rate": "targeted",
        "train": {"epochs": 2, "batch_size": 32, "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0,
                  "milestones": []},
        "train_d": {"epochs": 3, "batch_size": 32, "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0,
                    "milestones": []},
        "seeds": [0, 1], "report_dir": str(report_dir),
        "archs": {k: {"model": m, "title": k.upper()} for k, m in ARCHS.items()}}
    recipe.update(over)
    return write_yaml(path, recipe)


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, tiny_set, tiny_model) -> Path:
    d = tmp_path_factory.mktemp("transfer")
    p = advgen("transfer", transfer_recipe(d / "t.yaml", tiny_set, tiny_model, d / "rep"))
    assert "t_transfer: report ->" in p.stdout and "Pearson r" in p.stdout
    return d / "rep"


def test_transfer_json_fields_and_values(report_dir, tiny_model):
    rep = json.loads((report_dir / "transfer.json").read_text())
    assert rep["kind"] == "transfer" and rep["seeds"] == [0, 1] and rep["rate"] == "targeted"
    assert rep["source"]["num_train"] == 150 and rep["source"]["num_test"] == 150
    assert rep["dataset"]["set"] == "d_det" and rep["dataset"]["num_train"] == 80
    assert rep["source_model"]["made_the_dataset"] is True and rep["source_model"]["arch"] == "small_cnn"
    at = rep["attack"]
    assert at["num_images"] == 60 and at["target_rule"] == "(y+1) mod C" and at["stored_as"] == "uint8 (rounded)"
    assert 0.0 < at["source_success"] <= 1.0 and at["counted"] == round(at["source_success"] * 60)
    assert at["mean_l2"] <= 1.5 + 0.05          # the eps ball, plus uint8 rounding
    assert [r["name"] for r in rep["archs"]] == list(ARCHS)       # recipe order
    assert [r["arch"] for r in rep["archs"]] == [m["arch"] for m in ARCHS.values()]
    for r in rep["archs"]:
        assert r["title"] == r["name"].upper() and r["params"] > 0 and r["seconds"] > 0
        assert [s["seed"] for s in r["per_seed"]] == [0, 1]
        for key in ("acc_generated", "acc_original", "transfer_rate", "untargeted_rate"):
            vals = [s[key] for s in r["per_seed"]]
            assert all(0.0 <= v <= 1.0 for v in vals + [r[key]]), (r["name"], key, vals)
            assert r[key] == pytest.approx(np.mean(vals)) and r[key + "_std"] == pytest.approx(np.std(vals, ddof=1))
        for s in r["per_seed"]:
            assert s["counted"] == at["counted"]
            assert s["transfer_rate"] <= s["untargeted_rate"] + 1e-9     # moved to the target => moved off y
    # the source's own architecture is found by arch + width + feature_dim (the tiny model is w16, f32)
    assert [r["same_as_source"] for r in rep["archs"]] == [False, False, False]
    assert rep["correlation_without_source_arch"] is None
    assert rep["correlation_acc_on_d"]["x"] == "acc_original" and rep["correlation_acc_on_d"]["n"] == 3


def test_correlation_is_computed_from_the_per_arch_numbers(report_dir):
    from scipy import stats

    rep = json.loads((report_dir / "transfer.json").read_text())
    xs = [r["acc_generated"] for r in rep["archs"]]
    ys = [r["transfer_rate"] for r in rep["archs"]]
    c = rep["correlation"]
    assert c["x"] == "acc_generated" and c["y"] == "transfer_rate" and c["n"] == 3 and c["alpha"] == 0.05
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        assert c["pearson_r"] is None and c["holds"] is False
        return
    assert c["pearson_r"] == pytest.approx(np.corrcoef(xs, ys)[0, 1])
    assert c["pearson_p"] == pytest.approx(stats.pearsonr(xs, ys)[1])
    assert c["spearman_rho"] == pytest.approx(stats.spearmanr(xs, ys)[0])
    slope, intercept = np.polyfit(xs, ys, 1)
    assert c["slope"] == pytest.approx(slope) and c["intercept"] == pytest.approx(intercept)
    assert c["holds"] == (c["pearson_r"] > 0 and c["pearson_p"] < 0.05)
    assert c["verdict"] == ("holds" if c["holds"] else
                            "positive, not significant" if c["pearson_r"] > 0 else "does not hold")


def test_report_md_and_figure3(report_dir):
    rep = json.loads((report_dir / "transfer.json").read_text())
    assert rep["figures"] == {"figure3": "figure3.png"}
    with Image.open(report_dir / "figure3.png") as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 200
    md = (report_dir / "transfer.md").read_text()
    assert ("| architecture | model | params | acc on D̂det | acc on D | transfer (targeted) | untargeted | seconds |"
            in md)
    assert "| SMALL | small_cnn(w8,f16) |" in md and "| MLP | mlp(w8,f16) |" in md
    assert "3 architectures" in md and "![Figure 3" in md


def test_a_rerun_reuses_every_model_and_the_examples(report_dir, tiny_set, tiny_model, capsys):
    from advgen.cli import main

    before = json.loads((report_dir / "transfer.json").read_text())
    recipe = transfer_recipe(report_dir.parent / "t.yaml", tiny_set, tiny_model, report_dir)
    capsys.readouterr()
    assert main(["transfer", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "attacking" not in out and "model 1 of" not in out      # nothing trained or attacked again
    after = json.loads((report_dir / "transfer.json").read_text())
    assert after["archs"] == before["archs"] and after["correlation"] == before["correlation"]


@pytest.mark.parametrize("override, msg", [
    ("archs.mlp.modle={}", "unknown key 'archs.mlp.modle'; valid keys of archs.mlp: model, title"),
    ("archs.mlp.model.arch=vgg19", "archs.mlp.model.arch: unknown value 'vgg19'"),
    ("count=some", "count: unknown value 'some'; choose one of 'fooled', 'all'"),
    ("attack.kind=inversion", "attack.kind: transfer examples are targeted PGD"),
    ("train_d.adversarial={eps: 0.5}", "train_d.adversarial: Figure 3's models are standard-trained"),
    ("seeds=[1,1]", "seeds: must be a non-empty list of distinct integers"),
    ("archs.mlp.epochs_d=0", "archs.mlp.epochs_d: must be >= 1"),
    ("source_model=nope.safetensors", "source_model: file 'nope.safetensors' does not exist"),
    ("dataset=/no/such/dir", "dataset: /no/such/dir: no such dataset directory"),
])
def test_recipe_errors_are_one_line_and_exit_2(tmp_path, tiny_set, tiny_model, capsys, override, msg):
    from advgen.cli import main

    recipe = transfer_recipe(tmp_path / "t.yaml", tiny_set, tiny_model, tmp_path / "rep")
    capsys.readouterr()
    assert main(["transfer", str(recipe), override]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advgen transfer: error: ") and msg in lines[0], lines
    assert not (tmp_path / "rep").exists()


def test_transfer_targets():
    from advgen.transfer import transfer_targets

    y = torch.arange(10).repeat(50)
    assert transfer_targets(y, 10, "det", 0).tolist() == ((y + 1) % 10).tolist()
    t = transfer_targets(y, 10, "rand", 3)
    assert bool((t != y).all()) and set(t.tolist()) == set(range(10))       # never y, every class
    assert t.tolist() == transfer_targets(y, 10, "rand", 3).tolist() != transfer_targets(y, 10, "rand", 4).tolist()


def test_correlation_edge_cases():
    from advgen.transfer import correlation

    assert correlation([0.1, 0.2], [0.3, 0.4], 0.05)["pearson_r"] is None          # two points say nothing
    assert correlation([0.1, 0.2, 0.3], [0.5, 0.5, 0.5], 0.05)["pearson_r"] is None  # constant rate
    c = correlation([0.1, 0.2, 0.3, 0.4, 0.5], [0.11, 0.19, 0.32, 0.41, 0.48], 0.05)
    assert c["pearson_r"] > 0.99 and c["holds"] is True and c["slope"] == pytest.approx(0.95, abs=0.05)
    assert correlation([0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], 0.05)["holds"] is False


SMALL = ("mlp", "gap_cnn", "wide_cnn", "tiny_vgg", "tiny_densenet")


@pytest.mark.parametrize("arch", SMALL)
def test_small_archs_run_on_digits_and_cifar_shapes(arch):
    from advgen.models.nets import build_classifier

    for c, s in ((1, 8), (3, 32)):
        torch.manual_seed(0)
        m = build_classifier(arch, 10, c, [0.5] * c, [0.25] * c, 8, 16)
        x = torch.rand(3, c, s, s, requires_grad=True)
        f = m.features(x)
        assert f.shape[0] == 3 and f.dim() == 2
        logits = m(x)
        assert logits.shape == (3, 10) and torch.allclose(m.model.head(f), logits, atol=1e-5)
        logits.sum().backward()          # attacks need d/dx
        assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("arch, params, feat", [("vgg16", 14_724_042, 512), ("densenet121", 6_956_298, 1024),
                                                ("inception_v3", 21_806_058, 2048)])
def test_paper_archs_build_with_sensible_size(arch, params, feat):
    from advgen.models.nets import build_classifier

    m = build_classifier(arch, 10, 3, [0.5] * 3, [0.25] * 3, 32, 64).eval()
    assert sum(p.numel() for p in m.parameters()) == params
    with torch.no_grad():
        x = torch.rand(1, 3, 32, 32)
        assert m.features(x).shape == (1, feat) and m(x).shape == (1, 10)


def test_new_archs_are_recipe_values_and_shipped_recipes_load(tiny_model):
    from advgen.models.nets import TRANSFER_GPU, TRANSFER_SMALL
    from advgen.recipe import ModelConfig
    from advgen.transfer import load_transfer_recipe

    archs = typing.get_args(typing.get_type_hints(ModelConfig)["arch"])
    assert set(TRANSFER_SMALL + TRANSFER_GPU) <= set(archs)
    names = sorted(p.name for p in (REPO / "recipes").glob("transfer_*.yaml"))
    assert names == ["transfer_cifar_cpu.yaml", "transfer_cifar_gpu.yaml", "transfer_digits.yaml"]
    kinds = {}
    for n in names:        # the source checkpoints are built elsewhere (cache/): stand the tiny one in
        r = load_transfer_recipe(REPO / "recipes" / n, [f"source_model={tiny_model}"])
        kinds[n] = {a.model.arch for a in r.archs.values()}
    assert len(kinds["transfer_digits.yaml"] & set(TRANSFER_SMALL)) >= 4
    assert len(kinds["transfer_cifar_cpu.yaml"] & set(TRANSFER_SMALL)) >= 4
    assert kinds["transfer_cifar_gpu.yaml"] == {"vgg16", "inception_v3", "resnet18", "densenet121", "resnet50"}


def test_source_arch_and_source_copy_are_recognised(tiny_model):
    from advgen.models.checkpoint import load_checkpoint, read_meta
    from advgen.recipe import ModelConfig
    from advgen.transfer import build_model, is_copy, same_as_source

    meta = read_meta(tiny_model)               # small_cnn, width 16, feature_dim 32
    assert same_as_source(ModelConfig(arch="small_cnn", width=16, feature_dim=32), meta)
    assert not same_as_source(ModelConfig(arch="small_cnn", width=16, feature_dim=64), meta)
    assert not same_as_source(ModelConfig(arch="mlp", width=16, feature_dim=32), meta)
    assert same_as_source(ModelConfig(arch="resnet50"), {"arch": "resnet50", "width": 32, "feature_dim": 64})
    source = load_checkpoint(tiny_model)
    assert is_copy(load_checkpoint(tiny_model), source)
    fresh = build_model(ModelConfig(arch="small_cnn", width=16, feature_dim=32), 10, 1, meta["mean"], meta["std"],
                        "cpu")
    assert not is_copy(fresh, source)

"""RobustBench source models (advgen.models.robustbench), offline: checkpoints are built here from the robustbench
package's own architecture code (random weights, no download), saved in RobustBench's on-disk layout, loaded
through advgen, and compared with the package's model. Skipped when robustbench is not installed."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

# find_spec, not importorskip: robustbench 1.1.1's package __init__ fails without setuptools' pkg_resources, which
# advgen works around (advgen.models.robustbench.import_robustbench); the tests must run there too
if importlib.util.find_spec("robustbench") is None:
    pytest.skip("robustbench is not installed (pip install robustbench)", allow_module_level=True)

from advgen.errors import CheckpointError  # noqa: E402
from advgen.models.robustbench import RobustBenchModel, load_robustbench, zoo_entry  # noqa: E402
from tests.conftest import write_yaml  # noqa: E402

# the cheapest L2 CIFAR-10 entries: DMPreActResNet-18 (normalises inside, Swish) and a plain ResNet-18 ([0,1] inputs)
DM = "Rebuffi2021Fixing_R18_cutmix_ddpm"
R18 = "Sehwag2021Proxy_R18"


def random_net(name: str, seed: int = 0) -> torch.nn.Module:
    """The package's own architecture for `name`, random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = zoo_entry(name, "cifar10", "L2")["model"]()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """{model_dir}/cifar10/L2/{DM}.pt as RobustBench saves it ('state_dict', DataParallel 'module.' prefixes) and a
    plain state dict of R18 elsewhere; returns (model_dir, the DM net, the R18 file, the R18 net)."""
    root = tmp_path_factory.mktemp("rb")
    dm = random_net(DM)
    (root / "models" / "cifar10" / "L2").mkdir(parents=True)
    torch.save({"state_dict": {"module." + k: v for k, v in dm.state_dict().items()}, "epoch": 3},
               root / "models" / "cifar10" / "L2" / f"{DM}.pt")
    r18 = random_net(R18, seed=1)
    torch.save({"module." + k: v for k, v in r18.state_dict().items()}, root / "r18.pt")
    return root / "models", dm, root / "r18.pt", r18


def penultimate(net, head: str, x):
    """The input of the package model's final Linear, by hand."""
    seen = []
    h = net.get_submodule(head).register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    try:
        logits = net(x)
    finally:
        h.remove()
    return seen[0], logits


def test_offline_layout_matches_the_package_model(zoo):
    model_dir, dm, r18_file, r18 = zoo
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name, net, kw, head in [(DM, dm, {"model_dir": model_dir}, "logits"), (R18, r18, {"checkpoint": r18_file},
                                                                               "linear")]:
        model = load_robustbench(name, "cifar10", "L2", features=f"{head}:input", **kw)
        assert isinstance(model, RobustBenchModel) and not model.training
        assert not any(p.requires_grad for p in model.parameters())
        with torch.no_grad():
            g_ref, logits_ref = penultimate(net, head, x)
            diff = (model(x) - logits_ref).abs().max().item()
            f, logits = model.features_and_logits(x)
        print(f"{name}: max |logit diff| = {diff:.3g}")
        assert diff <= 1e-5
        assert model.features(x).shape == (6, 512) and torch.equal(f, g_ref.flatten(1))
        assert torch.equal(logits, model(x))
        assert model.info["feature_dim"] == 512 and model.info["num_classes"] == 10
    # another layer: its output, flattened
    model = load_robustbench(DM, features="layer_3", model_dir=model_dir)
    assert model.features(x[:2]).shape == (2, 512 * 4 * 4)


def test_feature_layer_and_file_errors_are_one_line(zoo, tmp_path):
    model_dir, _, r18_file, _ = zoo

    def err(**kw):
        kw = {"name": DM, "features": "logits:input", "model_dir": model_dir, **kw}
        with pytest.raises(CheckpointError) as e:
            load_robustbench(**kw)
        assert "\n" not in str(e.value)
        return str(e.value)

    msg = err(features="avgpool")
    assert "unknown features layer 'avgpool'" in msg and "'logits:input'" in msg and "'layer_3'" in msg
    assert "Conv2d output" in err(features="conv_2d")
    assert "features must name a layer" in err(features=None)
    assert "does not exist" in err(checkpoint=tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(r18_file.read_bytes()[:5000])
    assert "truncated or corrupt" in err(checkpoint=bad)
    assert "does not match the architecture of" in err(checkpoint=r18_file)     # R18 weights under DM name
    assert "did you mean Rebuffi2021Fixing_R18_cutmix_ddpm" in err(name="Rebuffi2021Fixing_R18_cutmix")
    torch.save({"optimizer": {"lr": torch.tensor(0.1)}}, tmp_path / "opt.pt")
    assert "holds no state dict" in err(checkpoint=tmp_path / "opt.pt")


def test_not_installed_is_one_line(monkeypatch):
    for k in [k for k in sys.modules if k == "robustbench" or k.startswith("robustbench.")]:
        monkeypatch.setitem(sys.modules, k, None)
    with pytest.raises(CheckpointError, match=r"need the robustbench package.*pip install robustbench"):
        load_robustbench(DM, features="logits:input")


def test_online_path_goes_through_robustbench_load_model(monkeypatch, tmp_path):
    import robustbench.utils

    calls = []

    def fake_load_model(**kw):      # what robustbench does online: download into the layout, build, load
        calls.append(kw)
        return random_net(DM)

    monkeypatch.setattr(robustbench.utils, "load_model", fake_load_model)
    model = load_robustbench(DM, model_dir=tmp_path, features="logits:input")
    assert calls == [{"model_name": DM, "model_dir": str(tmp_path), "dataset": "cifar10", "threat_model": "L2"}]
    assert model.features(torch.rand(1, 3, 32, 32)).shape == (1, 512)

    def offline(**kw):
        raise ConnectionError("HTTPSConnectionPool(host='drive.google.com', port=443): Max retries exceeded\nmore")

    monkeypatch.setattr(robustbench.utils, "load_model", offline)
    with pytest.raises(CheckpointError) as e:
        load_robustbench(DM, model_dir=tmp_path, features="logits:input")
    assert "robustbench could not load" in str(e.value) and "ConnectionError" in str(e.value)
    assert f"{DM}.pt" in str(e.value) and "\n" not in str(e.value)


def test_convert_cli_then_generate_d_robust(zoo, tmp_path, capsys):
    """`advgen convert-checkpoint DIR DST --robustbench NAME --features LAYER`, then a tiny `advgen generate` of D̂R."""
    from advgen.cli import main
    from advgen.models.checkpoint import load_checkpoint

    model_dir, dm, _, _ = zoo
    dst = tmp_path / "rb.safetensors"
    assert main(["convert-checkpoint", str(model_dir), str(dst), "--robustbench", DM, "--features", "nope"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("advgen convert-checkpoint: error: unknown features layer 'nope'")
    assert main(["convert-checkpoint", str(model_dir), str(dst), "--robustbench", DM]) == 2
    assert "--robustbench needs --features" in capsys.readouterr().err
    assert main(["convert-checkpoint", str(model_dir), str(dst), "--robustbench", DM, "--features",
                 "logits:input"]) == 0
    meta = json.loads(dst.with_suffix(".json").read_text())
    assert meta["arch"] == "robustbench" and meta["feature_dim"] == 512 and meta["adversarial"] is True
    assert meta["robustbench"]["name"] == DM and meta["robustbench"]["features"] == "logits:input"
    assert (meta["mean"], meta["std"]) == ([0.0] * 3, [1.0] * 3)

    try:
        model = load_checkpoint(dst)
    except CheckpointError as e:
        pytest.skip(f"advgen.models.checkpoint cannot rebuild arch 'robustbench' yet ({e})")
    x = torch.rand(3, 3, 32, 32)
    assert (model(x) - dm(x)).abs().max().item() <= 1e-5

    out = tmp_path / "out"
    recipe = write_yaml(tmp_path / "r.yaml", {
        "name": "rb_robust", "dataset": "d_robust",
        "source": {"kind": "synthetic", "num_samples": 6, "shape": [3, 32, 32], "num_classes": 10},
        "model": {"checkpoint": str(dst)},
        "attack": {"step_size": 0.1, "steps": 3, "x0": "train"},
        "output": {"dir": str(out), "shard_size": 6}, "batch_size": 6, "seed": 0, "device": "cpu"})
    assert main(["generate", str(recipe)]) == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["count"] == 6 and manifest["checkpoint"]["arch"] == "robustbench"
    assert manifest["checkpoint"]["adversarial"] is True
    assert manifest["stats"]["mean_rel_dist_final"] < manifest["stats"]["mean_rel_dist_init"]

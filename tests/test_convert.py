"""Loading existing checkpoints (advgen.models.convert): robustness-library dicts, plain state dicts of
our Classifier or of a bare net, refusal of arbitrary pickles, and `advgen convert-checkpoint`.

Everything is built in tmp_path from random weights (nothing is downloaded); ResNet-50 runs on a
batch of 2 32x32 images. Run: python -m pytest -q tests/test_convert.py
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from advgen.cli import main as cli_main
from advgen.models import CheckpointError, load_checkpoint, load_model, save_checkpoint
from advgen.models.convert import load_torch_checkpoint
from advgen.writers.layout import sha256_file
from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, Bottleneck, build_classifier

REPO = Path(__file__).resolve().parent.parent
# deliberately not CIFAR's, so a loader that ignored the stored normalisation would fail
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def random_classifier(arch, mean=MEAN, std=STD, num_classes=10, seed=0, **kw):
    """A Classifier with random weights and randomised BN affine/running stats (so eval-mode BN matters)."""
    torch.manual_seed(seed)
    model = build_classifier(arch, num_classes, kw.pop("in_channels", 3), mean, std, **kw)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(1234)
    return model.eval()


def robustness_state(model) -> dict:
    """The `model` entry of a robustness-library checkpoint: AttackerModel wrapped in DataParallel."""
    net = model.model.state_dict()
    mean, std = model.normalize.mean.view(3, 1, 1).clone(), model.normalize.std.view(3, 1, 1).clone()
    state = {}
    state["module.normalizer.new_mean"], state["module.normalizer.new_std"] = mean, std
    state.update({f"module.model.{k}": v for k, v in net.items()})
    state["module.attacker.normalize.new_mean"], state["module.attacker.normalize.new_std"] = mean, std
    # the library's attacker holds the same module: shared tensors, as in real files
    state.update({f"module.attacker.model.{k}": v for k, v in net.items()})
    return state


def robustness_checkpoint(model, path, key="model", **save_kw) -> Path:
    first = next(iter(model.parameters()))
    torch.save({
        key: robustness_state(model),
        "optimizer": {"state": {0: {"momentum_buffer": torch.zeros_like(first)}},
                      "param_groups": [{"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "params": [0]}]},
        "schedule": {"milestones": collections.Counter({50: 1, 100: 1}), "gamma": 0.1, "last_epoch": 150,
                     "_last_lr": [0.001]},
        "epoch": 151,
        "amp": {"loss_scaler0": {"loss_scale": 65536.0, "unskipped": 0}},
    }, path, **save_kw)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tests share 2 busy cores: two intra-op threads there made a ResNet-50 forward 15x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    model = random_classifier("resnet50")
    return model, robustness_checkpoint(model, tmp_path_factory.mktemp("r50") / "checkpoint.pt.best")


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    model = random_classifier("resnet18", seed=1)
    return model, robustness_checkpoint(model, tmp_path_factory.mktemp("r18") / "cifar_linf.pt")


def assert_same(loaded, ref, images):
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        assert torch.equal(loaded(images), ref(images))
        assert torch.equal(loaded.features(images), ref.features(images))


def test_robustness_resnet50(resnet50, images):
    ref, path = resnet50
    model = load_model(path)   # suffix .best, as the library writes it; arch inferred
    assert_same(model, ref, images)
    blocks = model.model.layer1[0], [len(getattr(model.model, f"layer{i}")) for i in range(1, 5)]
    assert isinstance(blocks[0], Bottleneck) and blocks[1] == [3, 4, 6, 3]
    assert model.normalize.mean.flatten().tolist() == ref.normalize.mean.flatten().tolist()
    with torch.no_grad():   # BN running stats matter: train-mode BN gives other logits
        assert not torch.allclose(model.train()(images), ref(images))


def test_robustness_resnet18_inferred_and_arch_mismatch(resnet18, images):
    ref, path = resnet18
    model, meta = load_torch_checkpoint(path)
    assert (meta["arch"], meta["num_classes"], meta["in_channels"], meta["width"], meta["feature_dim"]) == \
        ("resnet18", 10, 3, 64, 512)
    assert (meta["source_format"], meta["epoch"], meta["normalization_from"]) == ("robustness", 151, "checkpoint")
    assert_same(model, ref, images)
    with pytest.raises(CheckpointError, match="holds resnet18 weights, not the requested arch 'resnet50'"):
        load_model(path, arch="resnet50")
    with pytest.raises(CheckpointError, match="unknown arch"):
        load_model(path, arch="resnet34")


def test_older_state_dict_key_saved_with_dill(tmp_path, images):
    dill = pytest.importorskip("dill")   # the library saves with pickle_module=dill
    ref = random_classifier("resnet18", num_classes=7, seed=2)
    path = robustness_checkpoint(ref, tmp_path / "old.pt", key="state_dict", pickle_module=dill,
                                 _use_new_zipfile_serialization=False)
    model, meta = load_torch_checkpoint(path)
    assert meta["num_classes"] == 7 and meta["source_format"] == "robustness"
    assert_same(model, ref, images)


def test_differing_attacker_copy_warns(tmp_path, images):
    ref = random_classifier("small_cnn", width=4, feature_dim=8)
    state = robustness_state(ref)
    state["module.attacker.model.linear.bias"] = state["module.attacker.model.linear.bias"] + 1
    torch.save({"model": state, "epoch": 3}, tmp_path / "x.pt")
    with pytest.warns(UserWarning, match="attacker.model"):
        model = load_model(tmp_path / "x.pt")
    assert_same(model, ref, images)   # module.model.* is the one used


def test_plain_classifier_state_dict(tmp_path, images):
    ref = random_classifier("resnet18", seed=3)
    torch.save(ref.state_dict(), tmp_path / "clf.pth")
    model, meta = load_torch_checkpoint(tmp_path / "clf.pth")
    assert meta["source_format"] == "state_dict" and meta["layout"] == "classifier"
    assert meta["mean"] == ref.normalize.mean.flatten().tolist()
    assert_same(model, ref, images)
    # a mean that disagrees with the stored one is an error, not a silent override
    with pytest.raises(CheckpointError, match="disagrees"):
        load_torch_checkpoint(tmp_path / "clf.pth", mean=CIFAR_MEAN)


def test_small_cnn_one_channel_classifier(tmp_path):
    ref = random_classifier("small_cnn", mean=(0.5,), std=(0.25,), in_channels=1, width=8, feature_dim=16)
    torch.save({"model": ref.state_dict(), "epoch": 4}, tmp_path / "digits.ckpt")
    model, meta = load_torch_checkpoint(tmp_path / "digits.ckpt")
    assert (meta["arch"], meta["in_channels"], meta["width"], meta["feature_dim"], meta["epoch"]) == \
        ("small_cnn", 1, 8, 16, 4)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(model(x), ref(x))


def test_bare_net_defaults_to_cifar_with_warning(tmp_path, images):
    ref = random_classifier("resnet18", mean=CIFAR_MEAN, std=CIFAR_STD, seed=4)
    # DataParallel prefix too: it is stripped
    torch.save({f"module.{k}": v for k, v in ref.model.state_dict().items()}, tmp_path / "bare.pt")
    with pytest.warns(UserWarning, match="stores no input normalisation.*CIFAR-10"):
        model, meta = load_torch_checkpoint(tmp_path / "bare.pt")
    assert meta["layout"] == "bare" and meta["normalization_from"] == "default"
    assert meta["mean"] == list(CIFAR_MEAN) and meta["std"] == list(CIFAR_STD)
    assert_same(model, ref, images)


def test_bare_net_mean_std_from_arguments(tmp_path, images, recwarn):
    ref = random_classifier("resnet18", seed=5)   # MEAN/STD
    # files from PyTorch < 0.4.1 lack BN's num_batches_tracked: still loadable
    old = {k: v for k, v in ref.model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "bare.pt")
    model, meta = load_torch_checkpoint(tmp_path / "bare.pt", mean=MEAN, std=STD)
    assert meta["normalization_from"] == "arguments" and not recwarn.list
    assert_same(model, ref, images)
    with pytest.raises(CheckpointError, match="2 values but the model takes 3 channels"):
        load_torch_checkpoint(tmp_path / "bare.pt", mean=(0.5, 0.5), std=STD)


@pytest.mark.parametrize("container", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused_without_running_it(tmp_path, container):
    marker = tmp_path / "pwned"

    class Evil:
        def __init__(self, target):
            self.target = target

        def __reduce__(self):   # unpickling would call open(target, "w"): creates the file
            return (open, (str(self.target), "w"))

    path = tmp_path / "evil.pt"
    if container == "torch.save":
        torch.save({"model": {"conv1.weight": torch.zeros(1)}, "epoch": Evil(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"model": Evil(marker)}, protocol=4))
    with pytest.raises(CheckpointError, match=r"refuses to unpickle.*convert it in a trusted environment") as e:
        load_model(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()
    # the payload is live: an unsafe load really would have created the file
    control = tmp_path / "control.pt"
    torch.save({"x": Evil(tmp_path / "control_marker")}, control)
    torch.load(control, weights_only=False)
    assert (tmp_path / "control_marker").exists()


def test_corrupt_and_unknown_files(tmp_path, resnet18):
    good = resnet18[1].read_bytes()
    cases = {"trunc.pt": good[: len(good) // 2], "empty.pt": b"", "junk.pt": bytes(range(256)) * 4,
             "text.pth": b"not a checkpoint\n"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            load_model(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(tmp_path / "trunc.pt")
    torch.save({"weights": [torch.zeros(2)]}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_model(tmp_path / "odd.pt")
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other_net.pt")
    with pytest.raises(CheckpointError, match="cannot infer the architecture"):
        load_model(tmp_path / "other_net.pt")


def test_safetensors_path_unchanged(tmp_path, images):
    ref = random_classifier("small_cnn", width=4, feature_dim=8)
    meta = {"arch": "small_cnn", "num_classes": 10, "in_channels": 3, "width": 4, "feature_dim": 8,
            "mean": list(MEAN), "std": list(STD)}
    save_checkpoint(ref, tmp_path / "m.safetensors", meta)
    assert_same(load_checkpoint(tmp_path / "m.safetensors", device="cpu"), ref, images)
    assert_same(load_model(tmp_path / "m.safetensors", device="cpu"), ref, images)
    with pytest.raises(CheckpointError, match="holds small_cnn weights"):
        load_model(tmp_path / "m.safetensors", arch="resnet18")
    torch.save(ref.state_dict(), tmp_path / "m.pt")       # ours only: a torch file is load_model's (or convert's)
    with pytest.raises(CheckpointError, match=r"is not \.safetensors; a PyTorch file is read by advgen\.models\.load_model"):
        load_checkpoint(tmp_path / "m.pt")


def advgen(*args) -> subprocess.Popen:
    """`python -m advgen.cli ARGS` from the repo root, started now; .communicate() collects it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "advgen.cli", *map(str, args)], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_cli_convert_checkpoint(tmp_path, resnet18, images):
    """Two real subprocesses, run side by side (each pays a torch import); other errors run main() in-process."""
    ref, src = resnet18
    dst = tmp_path / "out" / "robust18.safetensors"
    (tmp_path / "bad.pt").write_bytes(src.read_bytes()[:5000])
    good = advgen("convert-checkpoint", src, dst)
    bad = advgen("convert-checkpoint", tmp_path / "bad.pt", tmp_path / "b.safetensors")
    (_, good_err), (_, bad_err) = good.communicate(timeout=120), bad.communicate(timeout=120)

    assert good.returncode == 0, good_err
    meta = json.loads(dst.with_suffix(".json").read_text())
    assert meta["converted_from"] == {"name": src.name, "sha256": sha256_file(src)}
    assert (meta["source_format"], meta["arch"], meta["epoch"], meta["metrics"]) == ("robustness", "resnet18", 151, {})
    assert meta["mean"] == list(ref.normalize.mean.flatten().tolist()) and meta["sha256"] == sha256_file(dst)
    assert_same(load_model(dst), ref, images)

    assert bad.returncode == 2 and "Traceback" not in bad_err, bad_err
    assert bad_err.startswith("advgen convert-checkpoint: error: ") and len(bad_err.strip().splitlines()) == 1
    assert "truncated or corrupt" in bad_err and not (tmp_path / "b.safetensors").exists()


def test_main_errors_are_one_line(tmp_path, resnet18, capsys):
    src = resnet18[1]
    (tmp_path / "done.safetensors").write_bytes(b"x")
    # a hand-written pickle that would call print("hi") when unpickled
    (tmp_path / "evil.pt").write_bytes(b"\x80\x02cbuiltins\nprint\nX\x02\x00\x00\x00hi\x85R.")
    for args in [(tmp_path / "missing.pt", tmp_path / "b.safetensors"),
                 (tmp_path / "evil.pt", tmp_path / "b.safetensors"),
                 (src, tmp_path / "done.safetensors"),                    # exists, no --overwrite
                 (src, tmp_path / "b.safetensors", "--arch", "resnet50"),
                 (src, tmp_path / "b.pt"),
                 (src, tmp_path / "b.safetensors", "--arch", "vgg"),      # argparse error: one line too
                 (src, tmp_path / "b.safetensors", "--mean", "0.5")]:
        rc = cli_main(["convert-checkpoint", *map(str, args)])
        err = capsys.readouterr().err
        assert rc == 2, (args, err)
        assert err.startswith("advgen convert-checkpoint: error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b.safetensors").exists()


def test_main_own_checkpoint_and_bare_net_warning(tmp_path, images, capsys):
    ref = random_classifier("small_cnn", mean=CIFAR_MEAN, std=CIFAR_STD, width=4, feature_dim=8)
    torch.save(ref.model.state_dict(), tmp_path / "bare.pt")
    assert cli_main(["convert-checkpoint", str(tmp_path / "bare.pt"), str(tmp_path / "bare.safetensors")]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("advgen convert-checkpoint: warning: ") and "CIFAR-10" in err and len(err.splitlines()) == 1
    meta = json.loads((tmp_path / "bare.json").read_text())
    assert (meta["source_format"], meta["layout"], meta["normalization_from"]) == ("state_dict", "bare", "default")
    assert "epoch" not in meta
    assert_same(load_model(tmp_path / "bare.safetensors"), ref, images)

    # our own checkpoint as SRC: re-saved with its meta, marked "advgen"
    assert cli_main(["convert-checkpoint", str(tmp_path / "bare.safetensors"), str(tmp_path / "again.safetensors"),
                         "--arch", "small_cnn"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["source_format"] == "advgen" and again["converted_from"]["name"] == "bare.safetensors"
    assert_same(load_model(tmp_path / "again.safetensors"), ref, images)


def test_generate_from_a_pytorch_checkpoint_converts_it_once(tmp_path, tiny_model, monkeypatch):
    """`model.checkpoint: x.pt` in a generation recipe: converted once into cache/converted/ (weights_only load),
    then used like any advgen checkpoint; the result equals generating from the safetensors file itself."""
    from advgen.generate import generate
    from advgen.recipe import GenerateRecipe, load_recipe
    from tests.conftest import write_yaml

    monkeypatch.chdir(tmp_path)                      # cache/converted/ lands here
    model = load_model(tiny_model)
    torch.save({"model": model.state_dict(), "epoch": 5}, tmp_path / "digits.pt")

    def recipe(ckpt, out):
        return load_recipe(write_yaml(tmp_path / f"{out}.yaml", {
            "name": "pt", "dataset": "d_det", "source": {"kind": "digits", "limit": 24},
            "model": {"checkpoint": str(ckpt)},
            "attack": {"norm": "l2", "eps": 1.0, "step_size": 0.5, "steps": 2},
            "output": {"dir": str(tmp_path / out)}, "batch_size": 12, "seed": 0}), GenerateRecipe)

    out = generate(recipe(tmp_path / "digits.pt", "from_pt"))
    converted, = (tmp_path / "cache" / "converted").glob("digits-*.safetensors")
    assert converted.name == f"digits-{sha256_file(tmp_path / 'digits.pt')[:12]}.safetensors"
    m = json.loads((out / "manifest.json").read_text())
    assert m["checkpoint"]["sha256"] == sha256_file(converted) and m["checkpoint"]["arch"] == "small_cnn"
    ref = generate(recipe(tiny_model, "from_safetensors"))
    assert (out / "shards" / "shard-00000.tar").read_bytes() == (ref / "shards" / "shard-00000.tar").read_bytes()
    stamp = converted.stat().st_mtime_ns
    generate(recipe(tmp_path / "digits.pt", "again"))                   # converted once, then reused
    assert converted.stat().st_mtime_ns == stamp

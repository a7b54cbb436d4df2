"""Fast paths (advgen/models/fast.py) and `advgen bench` (advgen/tools/bench.py), on CPU.

The fast paths must not change what is generated beyond float rounding: on the tiny trained digits
model, targeted success of every path is within 1 point of plain fp32 (bf16: within 2 points, since
bf16 rounds the logits) and mean ||delta||_2 within 2%. BatchNorm folding is checked directly: the
same logits and input gradients to 1e-4 (relative to the largest entry).
"""

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from advgen.models.fast import (FastModel, auto_batch_size, bf16_is_native, conv_bn_pairs, fuse_conv_bn, prepare,
                                 resolve_autocast_dtype)
from advgen.attacks.pgd import targeted_pgd
from advgen.models.checkpoint import freeze, load_checkpoint
from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, build_classifier
from tests.conftest import REPO, advgen

SUCCESS_TOL = 0.01        # fp32 paths (fused BN, channels_last, compile): 1 point
SUCCESS_TOL_BF16 = 0.02   # bf16 autocast: 2 points (measured 0.4 on this model)
L2_RTOL = 0.02            # mean ||delta||_2 within 2%


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two intra-op threads on a shared, loaded 2-core box stall at every op barrier (small models run
    10-20x slower than on one thread); one thread keeps these tests fast and their timing stable."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def random_bn_stats(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
    return model


def logits_and_grad(model, x, t):
    x = x.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, t, reduction="sum"), x)
    return logits.detach(), grad


def assert_rel_close(a, b, tol=1e-4):
    scale = b.abs().max().clamp_min(1e-12)
    assert ((a - b).abs().max() / scale).item() <= tol


@pytest.mark.parametrize("arch,n_pairs", [("resnet18", 20), ("resnet50", 53)])
def test_fuse_conv_bn_same_logits_and_input_gradients(arch, n_pairs):
    torch.manual_seed(0)
    model = freeze(random_bn_stats(build_classifier(arch, 10, 3, CIFAR_MEAN, CIFAR_STD)))
    x, t = torch.rand(2, 3, 16, 16), torch.tensor([3, 7])
    assert len(conv_bn_pairs(model)) == n_pairs
    fused = fuse_conv_bn(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())       # original untouched
    assert all(not p.requires_grad for p in fused.parameters()) and not fused.training
    ref_logits, ref_grad = logits_and_grad(model, x, t)
    logits, grad = logits_and_grad(fused, x, t)
    assert_rel_close(logits, ref_logits)
    assert_rel_close(grad, ref_grad)
    with torch.no_grad():
        assert_rel_close(fused.features(x), model.features(x))


def test_fuse_conv_bn_without_batchnorm_is_a_frozen_copy():
    model = build_classifier("small_cnn", 10, 1, [0.5], [0.5])
    fused = fuse_conv_bn(model)
    assert fused is not model and conv_bn_pairs(model) == []
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(fused(x), model.eval()(x))


def test_prepare_freezes_and_resolves_auto():
    model = build_classifier("small_cnn", 10, 1, [0.5], [0.5]).train()
    fast, dtype = prepare(model, precision="fp32", channels_last="auto", compile="auto", device="cpu")
    assert isinstance(fast, FastModel) and dtype is None
    assert fast.channels_last and not fast.compiled      # auto: NHWC on, compile off
    assert not fast.training and all(not p.requires_grad for p in fast.parameters())
    assert model.training and all(p.requires_grad for p in model.parameters())   # the input is not modified
    with pytest.raises(RuntimeError, match="frozen"):
        fast.train()
    assert resolve_autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert resolve_autocast_dtype("auto", "cpu") is (torch.bfloat16 if bf16_is_native("cpu") else None)
    with pytest.raises(ValueError):
        resolve_autocast_dtype("fp16", "cpu")
    x = torch.rand(3, 1, 8, 8)
    f, logits = fast.features_and_logits(x)
    assert f.shape == (3, 64) and logits.shape == (3, 10)


def test_auto_batch_size():
    calls = []
    assert auto_batch_size(calls.append, 64, device="cpu") == 64 and calls == []

    def probe(bs):                  # accelerate shrinks the batch after CUDA-OOM-looking errors
        calls.append(bs)
        if bs > 48:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    assert auto_batch_size(probe, 64, device="cuda") == calls[-1] <= 48
    assert calls[0] == 64 and calls == sorted(calls, reverse=True) and len(calls) > 1


@pytest.fixture(scope="module")
def digits_attack_set(one_thread, request):
    from advgen.recipe import SourceConfig
    from advgen.sources import load_source

    tiny_model = request.getfixturevalue("tiny_model")    # trained under one_thread if not built yet

    src = load_source(SourceConfig(kind="digits"), "test")
    x = src.all_images().float() / 255.0
    return load_checkpoint(tiny_model), x, (src.labels + 1) % 10


def success_and_l2(ref, model, x, t, dtype):
    x_adv, _ = targeted_pgd(model, x, t, norm="l2", eps=1.0, step_size=0.2, steps=10, autocast_dtype=dtype)
    x_q = (x_adv * 255).round() / 255
    with torch.no_grad():
        success = (ref(x_q).argmax(1) == t).float().mean().item()
    return success, (x_q - x).flatten(1).norm(dim=1).mean().item()


@pytest.mark.parametrize("kw,tol", [
    (dict(precision="fp32", channels_last=False), SUCCESS_TOL),
    (dict(precision="fp32", channels_last=True), SUCCESS_TOL),
    (dict(precision="bf16", channels_last=False), SUCCESS_TOL_BF16),
    pytest.param(dict(precision="bf16", channels_last=True), SUCCESS_TOL_BF16, marks=pytest.mark.slow),
    pytest.param(dict(precision="fp32", channels_last=True, compile=True), SUCCESS_TOL, marks=pytest.mark.slow),
], ids=["fused", "fused_cl", "bf16", "bf16_cl", "compile_cl"])
def test_fast_paths_keep_targeted_success(digits_attack_set, kw, tol):
    ref, x, t = digits_attack_set
    base_success, base_l2 = success_and_l2(ref, ref, x, t, None)
    assert 0.3 < base_success < 0.95, base_success          # not saturated: differences would show
    fast, dtype = prepare(ref, compile=kw.pop("compile", False), device="cpu", **kw)
    success, l2 = success_and_l2(ref, fast, x, t, dtype)
    assert abs(success - base_success) <= tol, (success, base_success)
    assert abs(l2 - base_l2) <= L2_RTOL * base_l2, (l2, base_l2)


def plain_robust_accuracy(model, images_u8, y, eps, steps=10):
    """The evaluation as it ran before 2026-11-30: untargeted PGD on the model as trained."""
    from advgen.attacks.pgd import untargeted_pgd

    x_adv, _ = untargeted_pgd(model, images_u8.float() / 255.0, y, norm="l2", eps=eps, step_size=2.5 * eps / steps,
                              steps=steps, keep_best=False)
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("which", ["digits_small_cnn", "airbench_random_bn"])
def test_robust_accuracy_runs_a_prepared_copy(digits_attack_set, which):
    """Evaluation attacks a fused, NHWC fp32 copy: robust accuracy within 1 point of attacking the model as
    trained, and the model handed in is left as it was. The trained digits CNN has no BatchNorm (layout only);
    the airbench net with random BatchNorm statistics has 3 conv -> BN pairs to fold (labels: its own clean
    predictions, so that eps 0.25 lands mid-range)."""
    from advgen.models.train import robust_accuracy
    from advgen.recipe import SourceConfig
    from advgen.sources import load_source

    if which == "digits_small_cnn":
        model, x, _ = digits_attack_set
        images, eps = (x * 255).round().to(torch.uint8), 0.4
        y = torch.as_tensor(load_source(SourceConfig(kind="digits"), "test").labels)
    else:
        torch.manual_seed(0)
        model = random_bn_stats(build_classifier("airbench", 10, 3, CIFAR_MEAN, CIFAR_STD, 8, 64)).eval()
        assert len(conv_bn_pairs(model)) == 3
        images = (torch.rand(256, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
        with torch.no_grad():
            y = model(images.float() / 255.0).argmax(1)
        eps = 0.25
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = plain_robust_accuracy(model, images, y, eps)
    assert 0.05 < plain < 0.9, plain                    # neither saturated nor untouched: differences would show
    fast = robust_accuracy(model, images, y, eps=eps, steps=10, batch_size=128)
    assert abs(fast - plain) <= SUCCESS_TOL, (fast, plain)
    assert not isinstance(model, FastModel) and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bench_cli_writes_every_field(tmp_path, capsys):
    out = tmp_path / "bench.json"
    p = advgen("bench", "--model", "small_cnn", "--batch", "8", "--steps", "2", "--repeats", "1", "--out", out,
               "--threads", "1", "--device", "cpu", cwd=REPO, timeout=120)
    assert "advgen_fp32" in p.stdout
    r = json.loads(out.read_text())
    assert set(r) >= {"config", "device", "torch", "cpu_capability", "methods"}
    assert r["device"] == "cpu" and r["torch"] == torch.__version__
    assert r["config"]["model"] == "small_cnn" and r["config"]["batch"] == 8 and r["config"]["steps"] == 2
    assert r["config"]["flops_step_per_image"] > r["config"]["flops_forward_per_image"] > 0
    assert list(r["methods"]) == ["floor", "torchattacks", "advgen", "advgen_fp32", "inversion"]
    for name, e in r["methods"].items():
        assert "skipped" not in e, (name, e)               # torchattacks is installed here
        assert isinstance(e["images_steps_per_s"], float) and e["images_steps_per_s"] > 0, name
        assert len(e["seconds"]) == 1 and e["seconds"][0] > 0
        assert e["ratio_vs_torchattacks"] > 0 and e["peak_memory_mb"] > 0 and e["model_tflops"] > 0
    assert r["methods"]["torchattacks"]["ratio_vs_torchattacks"] == 1.0
    assert r["methods"]["advgen"]["settings"]["precision"] in ("fp32", "bf16")

    from advgen.report import main as report_main           # the README's speed table is built from this JSON
    assert report_main([str(out)]) == 0
    e = r["methods"]["advgen"]
    row = f"| `bench.json`: small_cnn, batch 8, 2 steps | advgen | {e['images_steps_per_s']:.1f} img·steps/s | "
    assert row + f"{e['ratio_vs_torchattacks']:.2f}× torchattacks |" in capsys.readouterr().out


def test_bench_with_checkpoint_reports_success(tmp_path, digits_attack_set, tiny_model):
    from advgen.tools import bench

    out = tmp_path / "b.json"
    assert bench.main(["--checkpoint", str(tiny_model), "--batch", "16", "--steps", "3", "--repeats", "1",
                       "--eps", "1.0", "--step-size", "0.2", "--methods", "floor,advgen,advgen_fp32",
                       "--out", str(out)]) == 0
    m = json.loads(out.read_text())["methods"]
    assert set(m) == {"floor", "advgen", "advgen_fp32"}
    for e in m.values():
        assert 0.0 <= e["targeted_success"] <= 1.0 and 0 < e["mean_l2"] <= 1.0 + 1 / 255 and e["eval_images"] == 16
        assert e["ratio_vs_torchattacks"] is None
    assert abs(m["advgen"]["targeted_success"] - m["advgen_fp32"]["targeted_success"]) <= 1 / 16


def test_bench_rejects_unknown_method(capsys):
    from advgen.cli import main

    assert main(["bench", "--methods", "floor,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("advgen bench: error: unknown methods ['nope']"), err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_prepare_cuda_defaults():
    model = build_classifier("resnet18", 10, 3, CIFAR_MEAN, CIFAR_STD)
    fast, dtype = prepare(model, compile=False, device="cuda")
    assert fast.channels_last and dtype == (torch.bfloat16 if bf16_is_native("cuda") else None)
    x = torch.rand(4, 3, 32, 32, device="cuda")
    x_adv, _ = targeted_pgd(fast, x, torch.zeros(4, dtype=torch.long, device="cuda"), steps=2, autocast_dtype=dtype)
    assert x_adv.dtype == torch.float32 and x_adv.shape == x.shape


def test_bench_e2e_times_generate_against_the_attack_alone(tmp_path, tiny_model, capsys):
    from tests.conftest import write_yaml

    recipe = write_yaml(tmp_path / "r.yaml", {
        "name": "e2e", "dataset": "d_det", "source": {"kind": "digits", "limit": 48},
        "model": {"checkpoint": str(tiny_model)},
        "attack": {"norm": "l2", "eps": 1.0, "step_size": 0.5, "steps": 3},
        "output": {"dir": str(tmp_path / "unused"), "shard_size": 16}, "batch_size": 16, "seed": 0})
    out = tmp_path / "e2e.json"
    p = advgen("bench-e2e", recipe, "--processes", "1", "--threads", "1", "--out", out, cwd=REPO, timeout=300)
    assert "generate_1p" in p.stdout and "vs attack" in p.stdout
    r = json.loads(out.read_text())
    assert r["images"] == 48 and r["cores"] == 1 and list(r["methods"]) == ["attack_only", "generate_1p"]
    a, g = r["methods"]["attack_only"], r["methods"]["generate_1p"]
    assert a["ratio_vs_attack_only"] == 1.0 and a["seconds"] > 0
    assert g["seconds"] > g["manifest_attack_seconds"] > 0 and g["writer_wait_seconds"] >= 0
    assert g["ratio_vs_attack_only"] == pytest.approx(g["seconds"] / a["seconds"], rel=1e-2)
    assert g["speed"]["batch_size"] == 16 and not (tmp_path / "unused").exists()
    from advgen.cli import main

    assert main(["bench-e2e", str(recipe), "--processes", "0"]) == 2
    assert "--processes takes counts >= 1" in capsys.readouterr().err

"""The airbench fast CIFAR-10 verifier: interface, whitening init, a CPU smoke run, and the GPU claim."""

import math
import time

import pytest
import torch

from tests.conftest import CIFAR
from advgen.models.airbench import AirbenchConfig, AirbenchNet, init_whitening, train_airbench, tta_logits
from advgen.models.nets import CIFAR_MEAN, CIFAR_STD, Classifier
from advgen.models.train import accuracy
from advgen.errors import RecipeError
from advgen.recipe import AugmentConfig, SourceConfig, TrainConfig

# airbench94's published hyper-parameters (lr and weight decay per 1,024 examples of a summed loss)
AIRBENCH94 = dict(batch_size=1024, lr=11.5, momentum=0.85, weight_decay=0.0153,
                  augment=AugmentConfig(flip=True, crop_padding=2))


def test_interface_matches_the_other_nets():
    torch.manual_seed(0)
    net = AirbenchNet(3, 10, width=8)
    model = Classifier(net, CIFAR_MEAN, CIFAR_STD)
    x = torch.rand(5, 3, 32, 32)
    f, logits = model.features_and_logits(x)
    assert f.shape == (5, 32) and logits.shape == (5, 10)
    assert torch.allclose(model(x), logits) and torch.allclose(net.head(f), logits)
    assert not net.whiten.weight.requires_grad and not net.block1.norm1.weight.requires_grad
    assert net.block1.norm1.bias.requires_grad


def whitened(eps: float, drop: int = 0):
    """Images with correlated channels, a whitening conv initialised on them with `eps`, and its bias-free
    responses (the first half of its filters; the second half is their negation)."""
    torch.manual_seed(0)
    mix = torch.tensor([[1.0, 0.8, 0.6], [0.0, 0.5, 0.3], [0.0, 0.0, 0.2]])
    x = torch.einsum("ij,njhw->nihw", mix, torch.randn(64, 3, 16, 16))
    net = AirbenchNet(3, 10, width=8)
    init_whitening(net, x, eps=eps, drop=drop)
    half = net.whiten.weight.shape[0] // 2
    return x, net, half, torch.nn.functional.conv2d(x, net.whiten.weight[:half])


def test_whitening_init_whitens_2x2_patches():
    x, net, half, out = whitened(eps=0.0)
    cov = torch.einsum("nchw,ndhw->cd", out, out) / (out.shape[0] * out.shape[2] * out.shape[3])
    assert torch.allclose(cov, torch.eye(half), atol=0.05)
    assert torch.equal(net.whiten.weight[half:], -net.whiten.weight[:half])


def test_whiten_eps_caps_the_gain_of_low_variance_patch_directions():
    x, net, half, out = whitened(eps=0.5)
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 12)
    evals = torch.linalg.eigvalsh(patches.T @ patches / len(patches)).flip(0)
    var = torch.einsum("nchw,nchw->c", out, out) / (out.shape[0] * out.shape[2] * out.shape[3])
    assert torch.allclose(var, evals / (evals + 0.5), atol=0.02)                 # not white: lambda / (lambda + eps)
    gains = net.whiten.weight[:half].flatten(1).norm(dim=1)
    assert torch.allclose(gains, 1 / torch.sqrt(evals + 0.5), rtol=1e-4)
    assert gains.max() <= 0.5 ** -0.5 + 1e-6                                     # no direction gains over 1/sqrt(eps)


def test_whiten_drop_blinds_the_net_to_the_lowest_variance_patch_directions():
    x, net, half, out = whitened(eps=0.0, drop=4)
    full = whitened(eps=0.0)[1].whiten.weight
    assert torch.equal(net.whiten.weight[:half - 4], full[:half - 4])          # the kept directions are unchanged
    assert torch.equal(net.whiten.weight[half - 4:half], full[:4])             # the dropped ones' slots copy them
    assert torch.equal(net.whiten.weight[half:], -net.whiten.weight[:half])
    patches = x.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 12)
    evecs = torch.linalg.eigh(patches.T @ patches / len(patches)).eigenvectors     # ascending variance

    def nudged(k):      # the whitening's response to the images plus direction k tiled over every aligned patch
        nudge = evecs[:, k].reshape(1, 3, 2, 2).repeat(1, 1, 8, 8)
        return torch.nn.functional.conv2d(x + 3 * nudge, net.whiten.weight[:half])[..., ::2, ::2]

    assert torch.allclose(nudged(0), out[..., ::2, ::2], atol=1e-4)            # a dropped direction moves nothing
    assert not torch.allclose(nudged(4), out[..., ::2, ::2], atol=1e-2)        # the weakest kept one does


def test_whiten_drop_must_leave_a_direction():
    with pytest.raises(RecipeError, match="whiten_drop.*>= 0"):
        AirbenchConfig(whiten_drop=-1).validate("airbench")
    with pytest.raises(RecipeError, match=r"whiten_drop: must be in \[0, 12\)"):
        init_whitening(AirbenchNet(3, 10, width=8), torch.randn(4, 3, 8, 8), drop=12)


def test_whiten_eps_must_be_positive():
    with pytest.raises(RecipeError, match="whiten_eps.*> 0"):
        AirbenchConfig(whiten_eps=0.0).validate("airbench")


def test_whiten_false_trains_the_first_conv_instead_of_freezing_eigenvectors():
    torch.manual_seed(0)
    images = (torch.rand(64, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.randint(0, 10, (64,))
    cfg = TrainConfig(epochs=2, **dict(AIRBENCH94, batch_size=32))
    weights = {}
    for whiten in (True, False):
        torch.manual_seed(0)
        model = Classifier(AirbenchNet(3, 10, width=8), CIFAR_MEAN, CIFAR_STD)
        start = model.model.whiten.weight.detach().clone()
        train_airbench(model, images, labels, cfg, AirbenchConfig(whiten=whiten, whiten_bias_epochs=1, lookahead=False), seed=0,
                       device=torch.device("cpu"))
        weights[whiten] = (start, model.model.whiten.weight.detach().clone())
    reference = AirbenchNet(3, 10, width=8)
    init_whitening(reference, Classifier(reference, CIFAR_MEAN, CIFAR_STD).normalize(images.float() / 255))
    assert torch.allclose(weights[True][1], reference.whiten.weight)       # the eigenvectors, frozen
    start, end = weights[False]
    assert not torch.allclose(start, end) and not torch.allclose(end, reference.whiten.weight)


def test_whiten_drop_trains():
    """Zero filters for the dropped directions made constant channels, and airbench's BatchNorm (eps 1e-12) turned
    them into NaN on the first step; the dropped slots copy kept filters instead."""
    torch.manual_seed(0)
    images = (torch.rand(64, 3, 16, 16) * 255).to(torch.uint8)
    labels = torch.randint(0, 10, (64,))
    model = Classifier(AirbenchNet(3, 10, width=8), CIFAR_MEAN, CIFAR_STD)
    losses = train_airbench(model, images, labels, TrainConfig(epochs=2, **dict(AIRBENCH94, batch_size=32)),
                            AirbenchConfig(whiten_drop=6, lookahead=False), seed=0, device=torch.device("cpu"))
    assert all(math.isfinite(v) for v in losses), losses
    assert all(p.isfinite().all() for p in model.parameters())


@pytest.mark.skipif(not CIFAR.is_dir(), reason="offline CIFAR-10 copy not beside this checkout")
def test_trains_on_a_cpu_cifar_subset_to_well_above_chance():
    """1,000 training images, 4 epochs, width 16: 27.6% on 1,000 test images (chance 10%); ~10-20 s on 2 cores."""
    from advgen.sources import load_source

    train = load_source(SourceConfig(kind="hf", path=str(CIFAR), limit=1000), "train")
    test = load_source(SourceConfig(kind="hf", path=str(CIFAR), limit=1000), "test")
    torch.manual_seed(0)
    model = Classifier(AirbenchNet(3, 10, width=16), CIFAR_MEAN, CIFAR_STD)
    cfg = TrainConfig(epochs=4, **dict(AIRBENCH94, batch_size=128))
    losses = train_airbench(model, train.all_images(), train.labels, cfg, AirbenchConfig(), seed=0,
                            device=torch.device("cpu"))
    assert losses[-1] < losses[0]
    model.eval()
    acc = accuracy(model, test.all_images(), test.labels)
    assert acc > 0.2, acc
    x = test.all_images()[:200].float() / 255
    assert tta_logits(model, x).shape == (200, 10)


@pytest.mark.gpu
def test_reaches_90_percent_on_the_jpeg_copy_in_well_under_a_minute_on_a_gpu():
    """The verifier's claim on the offline CIFAR-10 copy: >= 89.5% clean test accuracy (no TTA) in < 60 s of training
    on one GPU. Measured on an H200 (results/gpu/, 2026-11-29): 90.1% (90.9% with TTA) in 13.2 s. airbench94 reaches
    94% on the original release; the copy's JPEG pixels cost about 3 points here, more than the 0.5-1.5 expected."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from advgen.sources import load_source

    train = load_source(SourceConfig(kind="hf", path=str(CIFAR)), "train")
    test = load_source(SourceConfig(kind="hf", path=str(CIFAR)), "test")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    model = Classifier(AirbenchNet(3, 10, width=64), CIFAR_MEAN, CIFAR_STD).to(dev)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    train_airbench(model, train.all_images(), train.labels, TrainConfig(epochs=12, **AIRBENCH94), AirbenchConfig(),
                   seed=0, device=dev)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    model.eval()
    acc = accuracy(model, test.all_images(), test.labels)
    print(f"airbench: {acc:.4f} clean test accuracy in {seconds:.1f} s")
    assert acc >= 0.895 and seconds < 60, (acc, seconds)

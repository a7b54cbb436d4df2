"""Attack invariants for every norm: the ball, the [0,1] box, targeted success, seeded determinism."""

import pytest
import torch

from advgen.attacks.descent import l2_project, l2_step, linf_project
from advgen.attacks.pgd import choose_targets, targeted_pgd, untargeted_pgd
from advgen.models import load_checkpoint
from advgen.recipe import SourceConfig
from advgen.sources import load_source

# eps large enough for near-certain targeted success on digits; linf eps in [0,1] pixel units
SETTINGS = {"l2": dict(eps=2.0, step_size=0.4, steps=30), "linf": dict(eps=0.3, step_size=0.05, steps=30)}
QUANT = 0.5 / 255  # half a grey level: the error of rounding to uint8, per pixel


@pytest.fixture(scope="module")
def batch(tiny_model):
    model = load_checkpoint(tiny_model)
    src = load_source(SourceConfig(kind="digits"), "test")
    x = src.images(torch.arange(200)).float() / 255
    y = src.labels[:200]
    return model, x, y


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("rule", ["det", "rand"])
def test_targeted_pgd_invariants(batch, norm, rule):
    model, x, y = batch
    t = choose_targets(y, 10, rule, torch.Generator().manual_seed(0))
    kw = SETTINGS[norm]
    x_adv, loss = targeted_pgd(model, x, t, norm=norm, **kw)
    delta = (x_adv - x).flatten(1)
    size = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    assert size.max() <= kw["eps"] * (1 + 1e-5)
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    # stored as uint8: the ball holds up to rounding (half a grey level per pixel)
    x_q = (x_adv * 255).round() / 255
    dq = (x_q - x).flatten(1)
    size_q = dq.norm(dim=1) if norm == "l2" else dq.abs().amax(dim=1)
    slack = QUANT * (dq.shape[1] ** 0.5 if norm == "l2" else 1)
    assert size_q.max() <= kw["eps"] + slack
    with torch.no_grad():
        success = (model(x_q).argmax(1) == t).float().mean()
        clean_hits = (model(x).argmax(1) == t).float().mean()
    assert success >= 0.95, f"targeted success {success:.3f}"
    assert clean_hits < 0.2 or rule == "rand"
    # the returned loss is the CE to the target at the returned iterate
    ce = torch.nn.functional.cross_entropy(model(x_adv), t, reduction="none")
    torch.testing.assert_close(loss, ce, rtol=1e-4, atol=1e-5)


def test_det_targets_and_rand_targets():
    y = torch.tensor([0, 1, 9, 5])
    assert choose_targets(y, 10, "det").tolist() == [1, 2, 0, 6]
    t = choose_targets(torch.zeros(20000, dtype=torch.long), 10, "rand", torch.Generator().manual_seed(0))
    counts = torch.bincount(t, minlength=10).float() / len(t)
    assert (counts - 0.1).abs().max() < 0.01          # uniform over all classes, including y itself
    t2 = choose_targets(torch.zeros(20000, dtype=torch.long), 10, "rand", torch.Generator().manual_seed(0))
    assert torch.equal(t, t2)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_same_seed_same_output_with_random_start(batch, norm):
    model, x, y = batch
    t = (y + 1) % 10
    kw = dict(SETTINGS[norm], steps=5, random_start=True)
    a, _ = targeted_pgd(model, x[:32], t[:32], norm=norm, generator=torch.Generator().manual_seed(7), **kw)
    b, _ = targeted_pgd(model, x[:32], t[:32], norm=norm, generator=torch.Generator().manual_seed(7), **kw)
    c, _ = targeted_pgd(model, x[:32], t[:32], norm=norm, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_keep_best_never_worse_than_last(batch):
    model, x, y = batch
    t = (y + 1) % 10
    kw = dict(eps=1.0, step_size=0.5, steps=15)   # a step this large oscillates
    _, best = targeted_pgd(model, x, t, keep_best=True, **kw)
    _, last = targeted_pgd(model, x, t, keep_best=False, **kw)
    assert (best <= last + 1e-6).all()
    assert (best < last - 1e-4).any()


def test_untargeted_pgd_lowers_accuracy(batch):
    model, x, y = batch
    x_adv, _ = untargeted_pgd(model, x, y, eps=1.5, step_size=0.3, steps=10)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.9
        assert (model(x_adv).argmax(1) == y).float().mean() < 0.3


def test_step_and_projection_primitives():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 5, 5, generator=g)
    grad = torch.randn(4, 3, 5, 5, generator=g)
    stepped = l2_step(x0, grad, 0.1)
    torch.testing.assert_close((stepped - x0).flatten(1).norm(dim=1), torch.full((4,), 0.1))
    far = x0 + torch.randn(4, 3, 5, 5, generator=g)
    p = l2_project(far, x0, 0.5)
    assert ((p - x0).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all() and p.min() >= 0 and p.max() <= 1
    q = linf_project(far, x0, 0.1)
    assert (q - x0).abs().max() <= 0.1 + 1e-6 and q.min() >= 0 and q.max() <= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_attack_on_cuda_matches_the_cpu_attack(batch):
    """The same attack on the GPU: inside the ball and the box, as successful as on the CPU (to 2 images of 200),
    and the same images up to kernel rounding (the CPU and cuDNN convolutions sum in other orders)."""
    model, x, y = batch
    t = (y + 1) % 10
    kw = dict(eps=2.0, step_size=0.4, steps=10)
    cpu, _ = targeted_pgd(model, x, t, **kw)
    gpu, _ = targeted_pgd(model.cuda(), x.cuda(), t.cuda(), **kw)
    model.cpu()
    assert gpu.device.type == "cuda"
    gpu = gpu.cpu()
    assert (gpu - x).flatten(1).norm(dim=1).max() <= 2.0 * (1 + 1e-5) and gpu.min() >= 0 and gpu.max() <= 1
    with torch.no_grad():
        succ_cpu, succ_gpu = ((model(a).argmax(1) == t).float().mean().item() for a in (cpu, gpu))
    assert succ_gpu > 0.9 and abs(succ_gpu - succ_cpu) <= 2 / 200
    assert (gpu - cpu).flatten(1).norm(dim=1).median() < 0.2

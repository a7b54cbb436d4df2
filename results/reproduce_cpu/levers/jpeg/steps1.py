# targeted success at eps 0.5 against a source model, as a function of PGD steps / step size
import json, sys, time, torch
sys.path.insert(0, __import__("os").environ.get("PYTHONPATH", "/tmp/wexp/main").split(":")[0])
from advgen.recipe import SourceConfig
from advgen.sources import load_source
from advgen.models.checkpoint import load_checkpoint
from advgen.attacks.pgd import targeted_pgd
torch.manual_seed(0); torch.set_num_threads(2)
ckpt = sys.argv[1]; n = int(sys.argv[2]); out = sys.argv[3]
model = load_checkpoint(ckpt).eval()
src = load_source(SourceConfig(kind="hf", path="/work/shared/data/cifar10", limit=n))
x = src.images(torch.arange(n)).float() / 255.0; y = torch.as_tensor(src.labels[:n]); t = (y + 1) % 10
res = []
for steps, ss in [(100, 0.1)]:
    t0 = time.time()
    xa, ce = targeted_pgd(model, x, t, eps=0.5, step_size=ss, steps=steps)
    with torch.no_grad():
        p = model(xa).argmax(1)
    d = (xa - x).flatten(1).norm(dim=1)
    r = dict(steps=steps, step_size=ss, success=(p == t).float().mean().item(), mean_ce=ce.mean().item(),
             mean_norm=d.mean().item(), seconds=time.time() - t0)
    print(r, flush=True); res.append(r)
json.dump(res, open(out, "w"), indent=1)

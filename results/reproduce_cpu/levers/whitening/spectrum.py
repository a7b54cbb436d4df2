"""Where does the D̂det perturbation put its energy, in the 2x2-patch eigenbasis of clean CIFAR images (the basis
airbench's frozen whitening conv amplifies by 1/sqrt(eigenvalue))?

    python spectrum.py OUTPUT_DIR [N] [OUT.json]    # an advgen D̂det / D̂rand output with npy copies; CIFAR=path
"""
import io, json, os, sys, tarfile
from pathlib import Path
import numpy as np, torch, datasets

out = Path(sys.argv[1]); limit = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
adv, idx = [], []
for tf in sorted((out / "shards").glob("shard-*.tar")):
    with tarfile.open(tf) as t:
        names = sorted(m.name for m in t.getmembers())
        for n in names:
            if n.endswith(".npy"):
                adv.append(np.load(io.BytesIO(t.extractfile(n).read())))
            elif n.endswith(".json"):
                idx.append(json.loads(t.extractfile(n).read())["source_index"])
    if len(adv) >= limit:
        break
adv = torch.tensor(np.stack(adv[:limit])).float(); idx = idx[:limit]
if adv.max() > 1.5: adv = adv / 255
ds = datasets.load_dataset(os.environ.get("CIFAR", "../shared/data/cifar10"), split="train")
x = torch.stack([torch.tensor(np.asarray(ds[int(i)]["img"].convert("RGB"))).permute(2, 0, 1).float() / 255 for i in idx])
delta = adv - x
print("mean ||delta||", delta.flatten(1).norm(dim=1).mean().item())
mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1); std = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
def patches(z): return z.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 12)
clean = (torch.stack([torch.tensor(np.asarray(ds[i]["img"].convert("RGB"))).permute(2, 0, 1).float() / 255 for i in range(5000)]) - mean) / std
pc = patches(clean); cov = pc.T @ pc / len(pc); evals, evecs = torch.linalg.eigh(cov)   # ascending
pd = patches(delta / std)
e_delta = (pd @ evecs).pow(2).mean(0); e_clean = (pc @ evecs).pow(2).mean(0)
rnd = torch.randn_like(delta); rnd = rnd / rnd.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
e_rnd = (patches(rnd / std) @ evecs).pow(2).mean(0)
gain = 1 / (evals + 5e-4)
rows = []
for k in range(12):
    rows.append(dict(direction=k, clean_variance=evals[k].item(), clean_energy_frac=(e_clean[k] / e_clean.sum()).item(),
                     delta_energy_frac=(e_delta[k] / e_delta.sum()).item(), random_energy_frac=(e_rnd[k] / e_rnd.sum()).item(),
                     delta_to_clean_snr=(e_delta[k] / e_clean[k]).item()))
    r = rows[-1]
    print(f"{k:2d} var {r['clean_variance']:.5f}  clean {r['clean_energy_frac']:.4f}  delta {r['delta_energy_frac']:.4f}  random {r['random_energy_frac']:.4f}  delta/clean {r['delta_to_clean_snr']:.3f}")
w = lambda e: (e * gain).sum() / (e_clean * gain).sum()
res = dict(set=str(out), n=limit, rows=rows,
           whitened_energy_ratio_delta_vs_clean=w(e_delta).item(), whitened_energy_ratio_random_vs_clean=w(e_rnd).item(),
           raw_energy_ratio_delta_vs_clean=(e_delta.sum() / e_clean.sum()).item(),
           bottom6_delta=(e_delta[:6].sum() / e_delta.sum()).item(), bottom6_random=(e_rnd[:6].sum() / e_rnd.sum()).item(),
           bottom6_clean=(e_clean[:6].sum() / e_clean.sum()).item())
print({k: v for k, v in res.items() if k != "rows"})
if len(sys.argv) > 3: Path(sys.argv[3]).write_text(json.dumps(res, indent=1))

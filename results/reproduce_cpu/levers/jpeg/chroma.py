"""Is the whitening lever an artifact of the JPEG copy of CIFAR-10? Three measurements.

1. The JPEG headers of the offline copy (../shared/data/cifar10): chroma subsampling and quality.
2. The 12 directions of airbench's whitening conv (eigenvectors of the 2x2-patch covariance of normalised training
   images, smallest variance first): how much of each lies in *chroma detail* (Cb / Cr varying inside the patch; the
   three Haar patterns per chroma channel, i.e. 6 dimensions). A 4:2:0 JPEG keeps one Cb and one Cr value per 2x2
   block, so that detail is removed from every image except what the decoder's upsampling interpolates back.
3. Where the generated sets' changes put their energy: D̂det / D̂rand's perturbation x_adv - x (float copies), and
   D̂R / D̂NR's x_r - x0 (the inversion's change to its start image, PNG): the fraction in chroma detail against clean
   images' and a random direction's, and the change's chroma-detail energy per image over a clean image's.

    python chroma.py OUT.json DATASET_DIR [DATASET_DIR ...]       # advgen outputs (first 2,000 samples of each)

Energies are measured in YCbCr (JFIF matrix) over aligned and unaligned 2x2 patches alike (the whitening conv has
stride 1).
"""
import io, json, os, sys, tarfile
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image, JpegImagePlugin

CIFAR = os.environ.get("CIFAR", "../shared/data/cifar10")
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2023, 0.1994, 0.2010]).view(1, 3, 1, 1)
YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
# standard IJG luminance table at quality 50; a header's table divided by it gives the quality scaling
IJG_LUMA50 = [16, 11, 10, 16, 24, 40, 51, 61]


def patches(z):                      # [N, C, H, W] -> [N * 31 * 31, C, 2, 2]
    return z.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, 2, 2)


def chroma_detail_fraction(p_rgb):
    """Per-row fraction of YCbCr energy that is chroma varying inside the 2x2 patch. p_rgb: [M, 3, 2, 2]."""
    ycc = torch.einsum("kc,mchw->mkhw", YCC, p_rgb)
    ac = ycc - ycc.mean(dim=(2, 3), keepdim=True)
    return ac[:, 1:].pow(2).sum(dim=(1, 2, 3)), ycc.pow(2).sum(dim=(1, 2, 3))


def load_rgb(ds, idx):
    return torch.stack([torch.tensor(np.asarray(ds[int(i)]["img"].convert("RGB"))).permute(2, 0, 1) for i in idx]).float() / 255


def main():
    out = Path(sys.argv[1]); sets = [Path(p) for p in sys.argv[2:]]
    res = {}
    raw = datasets.load_dataset(CIFAR, split="train").cast_column("img", datasets.Image(decode=False))
    sampling, quality = {}, {}
    for i in range(0, 50000, 50):                                    # 1,000 headers
        im = Image.open(io.BytesIO(raw[i]["img"]["bytes"]))
        s = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}.get(JpegImagePlugin.get_sampling(im), "other") if im.format == "JPEG" else im.format
        sampling[s] = sampling.get(s, 0) + 1
        if im.format == "JPEG":
            q = np.array(im.quantization[0])[:8] / np.array(IJG_LUMA50)   # zigzag order's first 8 vs IJG's row 0 (approx.)
            key = f"{q.mean():.2f}"
            quality[key] = quality.get(key, 0) + 1
    res["jpeg_headers"] = {"checked": 1000, "chroma_subsampling": sampling, "luma_table_scale_vs_ijg_q50": quality}
    print(res["jpeg_headers"])

    ds = datasets.load_dataset(CIFAR, split="train")
    x = load_rgb(ds, range(5000))
    pz = patches((x - MEAN) / STD).reshape(-1, 12)
    cov = pz.T @ pz / len(pz)
    evals, evecs = torch.linalg.eigh(cov)                             # ascending: the whitening's largest gains first
    dirs = evecs.T.reshape(12, 3, 2, 2) * STD.view(1, 3, 1, 1)        # each direction in [0,1] RGB units
    num, den = chroma_detail_fraction(dirs)
    rows = [dict(direction=k, variance=evals[k].item(), whitening_gain=(1 / np.sqrt(evals[k].item() + 5e-4)),
                 chroma_detail_fraction=(num[k] / den[k]).item()) for k in range(12)]
    for r in rows:
        print(f"direction {r['direction']:2d}  variance {r['variance']:.5f}  gain {r['whitening_gain']:6.1f}  "
              f"chroma detail {r['chroma_detail_fraction']:.3f}")
    res["whitening_directions"] = rows
    n, d = chroma_detail_fraction(patches(x))
    res["clean_chroma_detail_fraction"] = (n.sum() / d.sum()).item()
    xc = x - x.mean(dim=(2, 3), keepdim=True)
    n, d = chroma_detail_fraction(patches(xc))
    res["clean_chroma_detail_fraction_of_nonflat"] = (n.sum() / d.sum()).item()   # energy net of each image's mean colour
    print("clean images: chroma detail", res["clean_chroma_detail_fraction"], "(of the energy around each image's mean colour:",
          res["clean_chroma_detail_fraction_of_nonflat"], ")")

    g = torch.Generator().manual_seed(0)
    for s in sets:
        adv, idx = [], []
        shards = sorted((s / "shards").glob("shard-*.tar"))
        with tarfile.open(shards[0]) as t:
            has_npy = any(m.name.endswith(".npy") for m in t.getmembers())
        for tf in shards:
            with tarfile.open(tf) as t:
                for name in sorted(m.name for m in t.getmembers()):
                    data = t.extractfile(name).read()
                    if name.endswith(".npy"):
                        adv.append(np.load(io.BytesIO(data)))
                    elif name.endswith(".png") and not has_npy:
                        adv.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).transpose(2, 0, 1))
                    elif name.endswith(".json"):
                        meta = json.loads(data)                  # inversions start from x0; attacks from x
                        idx.append(meta["x0_index"] if isinstance(meta.get("x0_index"), int) else meta["source_index"])
            if len(adv) >= 2000:
                break
        adv = torch.tensor(np.stack(adv[:2000])).float(); idx = idx[:2000]
        adv = adv / 255 if adv.max() > 1.5 else adv
        start = load_rgb(ds, idx)
        delta = adv - start
        n, d = chroma_detail_fraction(patches(delta))
        nc, _ = chroma_detail_fraction(patches(start))
        rnd = torch.randn(delta.shape, generator=g)
        nr, dr = chroma_detail_fraction(patches(rnd))
        r = dict(set=str(s), n=len(idx), kind="npy" if has_npy else "png", mean_l2=delta.flatten(1).norm(dim=1).mean().item(),
                 delta_chroma_detail_fraction=(n.sum() / d.sum()).item(), random_chroma_detail_fraction=(nr.sum() / dr.sum()).item(),
                 delta_chroma_detail_energy_over_clean=(n.sum() / nc.sum()).item())
        print(r)
        res.setdefault("perturbations", []).append(r)
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

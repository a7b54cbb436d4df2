"""`advgen card` and `advgen publish` end to end against the local Hub (tests/support/hubserver.py), with the real
huggingface_hub and datasets clients: four tiny digits configs (40 images, 3 steps, shards of 16) are generated once
per module, published, loaded back (parquet, streamed parquet, WebDataset) and compared pixel by pixel with the
local files; re-publishing makes no commit; broken outputs, a wrong token and an unknown branch are one-line errors
that upload nothing; the token is found nowhere but in the Authorization header.

Cost on 2 CPU cores: ~40 s (generation ~10 s, three `advgen publish` subprocesses, the rest in-process).
"""

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import advgen, write_yaml

PGD = {"norm": "l2", "eps": 1.5, "step_size": 0.3, "steps": 3}
INVERSION = {"step_size": 0.05, "steps": 3, "x0": "train"}
ATTACKS = {"d_det": PGD, "d_rand": PGD, "d_robust": INVERSION, "d_nonrobust": INVERSION}   # the dataset picks the kind
TWO, FOUR = ("d_det", "d_rand"), ("d_det", "d_rand", "d_robust", "d_nonrobust")

CAPTURED = []      # every stdout/stderr of the publishes and cards here, scanned for the token at the end


# ------------------------------------------------------------------------------------------------------------------
# Fixtures and helpers
# ------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def outputs(tmp_path_factory, tiny_model):
    """{config: output dir} (in-process generation, ~2 s per config)."""
    from advgen.generate import generate
    from advgen.recipe import GenerateRecipe, load_recipe

    d = tmp_path_factory.mktemp("publish_outputs")
    outs = {}
    for name in FOUR:
        recipe = write_yaml(d / f"{name}.yaml", {
            "name": f"tiny_{name}", "dataset": name, "source": {"kind": "digits", "limit": 40},
            "model": {"checkpoint": str(tiny_model)}, "attack": ATTACKS[name],
            "output": {"dir": str(d / name), "shard_size": 16, "npy": True}, "batch_size": 16, "seed": 1})
        outs[name] = generate(load_recipe(recipe, GenerateRecipe))
    return outs


def need(outputs, names) -> list[Path]:
    return [outputs[n] for n in names]


def publish_cli(*args, token=None, check=True):
    """`advgen publish` as a real process; HF_ENDPOINT comes from the environment tests/support/conftest_hub.py set."""
    env = {"HF_TOKEN": token} if token else {}
    p = advgen("publish", *map(str, args), env=env, check=check, timeout=300)
    CAPTURED.append(p.stdout + p.stderr)
    return p


def publish_main(capsys, *args):
    """`advgen publish` in-process (same code path as the console script, without the interpreter start-up)."""
    from advgen.cli import main

    rc = main(["publish", *map(str, args)])
    out, err = capsys.readouterr()
    CAPTURED.append(out + err)
    return rc, out, err


def one_line_error(rc, err):
    assert rc == 2, err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("advgen publish: error: "), err
    assert "Traceback" not in err
    return lines[0]


def local_samples(out: Path) -> dict:
    """{source_index: (uint8 CHW image, label, meta, float npy)} from the output's WebDataset shards."""
    from advgen.writers.reader import read_shard
    from advgen.writers.shards import decode_png

    m = json.loads((out / "manifest.json").read_text())
    samples = {}
    for s in m["shards"]:
        for key, f in read_shard(out / s["tar"]).items():
            meta = json.loads(f["json"])
            samples[meta["source_index"]] = (decode_png(f["png"]), int(f["cls"]), meta,
                                             np.load(io.BytesIO(f["npy"])) if "npy" in f else None)
    assert len(samples) == m["count"]
    return samples


def local_parquet(out: Path) -> dict:
    import pyarrow.parquet as pq

    from advgen.writers.shards import decode_png

    rows = {}
    for p in sorted((out / "data").glob("train-*.parquet")):
        for r in pq.read_table(p).to_pylist():
            rows[r["source_index"]] = (decode_png(r["image"]["bytes"]), r["label"])
    return rows


def pil_chw(img) -> np.ndarray:
    arr = np.asarray(img)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def assert_same_as_local(rows, out: Path, features=None):
    """Every row of a loaded config equals the local sample with its source_index: pixels, label, provenance."""
    local, parquet = local_samples(out), local_parquet(out)
    seen = set()
    for r in rows:
        i = r["source_index"]
        img, label, meta, _ = local[i]
        np.testing.assert_array_equal(pil_chw(r["image"]), img)
        np.testing.assert_array_equal(parquet[i][0], img)
        assert r["label"] == label == parquet[i][1]
        for k, v in meta.items():
            assert r[k] == v, (k, r[k], v)
        seen.add(i)
    assert seen == set(local)
    if features is not None:
        assert features["label"].names == [str(c) for c in range(10)]
        assert type(features["image"]).__name__ == "Image"


@pytest.fixture(scope="module")
def two_config_repo(outputs, hub_server):
    """d_det + d_rand published once through the console script."""
    repo = f"{hub_server.user}/publish-two"
    p = publish_cli(*need(outputs, TWO), "--repo-id", repo, token=hub_server.token)
    return repo, p


# ------------------------------------------------------------------------------------------------------------------
# The two PGD configs: publish, load back, card, idempotence
# ------------------------------------------------------------------------------------------------------------------

def test_publish_creates_one_commit_with_the_layout(two_config_repo, hub_server):
    repo, p = two_config_repo
    commits = hub_server.commits(repo)
    assert len(commits) == 2            # the Hub's "initial commit" + ours
    assert f"{hub_server.url}/datasets/{repo}" in p.stdout and commits[-1] in p.stdout
    files = hub_server.files(repo)
    for name in TWO:
        assert f"manifests/{name}.json" in files
        assert sorted(f for f in files if f.startswith(f"data/{name}/")) == \
            [f"data/{name}/train-{i:05d}.parquet" for i in range(3)]
        assert sorted(f for f in files if f.startswith(f"webdataset/{name}/")) == \
            [f"webdataset/{name}/shard-{i:05d}.tar" for i in range(3)]
    assert {f for f in files if f.startswith("assets/")} == {f"assets/{name}.png" for name in TWO}   # the previews
    assert {f for f in files if f.startswith("recipes/")} == {f"recipes/{name}.yaml" for name in TWO}
    assert set(files) == {".gitattributes", "README.md"} | {f for f in files if f.startswith(
        ("data/", "webdataset/", "manifests/", "assets/", "recipes/"))}
    assert {f for f in hub_server.lfs_files(repo)} >= {f for f in files if f.endswith((".parquet", ".tar"))}


def test_uploaded_bytes_equal_the_local_files(two_config_repo, outputs, hub_server):
    """Data files byte for byte; the manifest as written, but with no local path in it."""
    repo, _ = two_config_repo
    files = hub_server.files(repo)
    for name in TWO:
        out = outputs[name]
        local, published = json.loads((out / "manifest.json").read_text()), json.loads(files[f"manifests/{name}.json"])
        assert local["recipe"]["output"]["dir"] == str(out) and os.path.isabs(local["checkpoint"]["path"])
        assert published["recipe"]["output"]["dir"] == "."
        assert published["checkpoint"]["path"] == published["recipe"]["model"]["checkpoint"] == "tiny.safetensors"
        text = files[f"manifests/{name}.json"].decode()
        assert str(out.parent) not in text and '"/' not in text and '"~' not in text
        assert {k: v for k, v in published.items() if k not in ("recipe", "checkpoint")} == \
            {k: v for k, v in local.items() if k not in ("recipe", "checkpoint")}
        for i in range(3):
            assert files[f"data/{name}/train-{i:05d}.parquet"] == (out / f"data/train-{i:05d}.parquet").read_bytes()
            assert files[f"webdataset/{name}/shard-{i:05d}.tar"] == (out / f"shards/shard-{i:05d}.tar").read_bytes()


@pytest.mark.parametrize("name", TWO)
def test_load_dataset_matches_local_output(two_config_repo, outputs, name):
    from datasets import load_dataset

    repo, _ = two_config_repo
    ds = load_dataset(repo, name, split="train")
    assert ds.num_rows == 40
    assert_same_as_local(ds, outputs[name], ds.features)
    stream = load_dataset(repo, name, split="train", streaming=True)
    assert_same_as_local(list(stream), outputs[name], stream.features)


def test_the_published_recipe_remakes_the_config_byte_for_byte(two_config_repo, outputs, hub_server, tiny_model,
                                                              tmp_path, monkeypatch):
    """recipes/<config>.yaml of the repo, run with the source model, gives the published shards again."""
    from advgen.generate import generate
    from advgen.recipe import GenerateRecipe, load_recipe

    repo, _ = two_config_repo
    text = hub_server.files(repo)["recipes/d_det.yaml"]
    assert text.startswith(b"# Remakes config d_det") and str(outputs["d_det"].parent).encode() not in text
    (tmp_path / "d_det.yaml").write_bytes(text)
    monkeypatch.chdir(tmp_path)
    out = generate(load_recipe(tmp_path / "d_det.yaml", GenerateRecipe, [f"model.checkpoint={tiny_model}"]))
    assert out == Path("runs/d_det")
    for sub in ("shards", "data"):
        for f in sorted((outputs["d_det"] / sub).iterdir()):
            assert (out / sub / f.name).read_bytes() == f.read_bytes(), f.name


def test_load_dataset_without_a_config_gives_the_first(two_config_repo, outputs):
    """`load_dataset(repo)` used to fail with "Config name is missing": the first config is the default, and
    source_label reads back as a ClassLabel like label."""
    from datasets import load_dataset

    repo, _ = two_config_repo
    ds = load_dataset(repo, split="train")
    assert ds.num_rows == 40
    assert_same_as_local(ds, outputs[TWO[0]], None)
    assert ds.features["source_label"].names == [str(c) for c in range(10)]


@pytest.mark.parametrize("name", TWO)
def test_webdataset_shards_load_from_the_hub(two_config_repo, outputs, name):
    from datasets import load_dataset

    repo, _ = two_config_repo
    ds = load_dataset("webdataset", data_files=f"hf://datasets/{repo}/webdataset/{name}/*.tar", split="train",
                      streaming=True)
    local = local_samples(outputs[name])
    seen = set()
    for r in ds:
        i = r["json"]["source_index"]
        img, label, meta, npy = local[i]
        np.testing.assert_array_equal(pil_chw(r["png"]), img)
        assert int(r["cls"]) == label and r["json"] == meta
        np.testing.assert_array_equal(np.asarray(r["npy"], dtype=np.float32), npy)
        # the PNG is the rounded float image (round, not truncate)
        np.testing.assert_array_equal(np.clip(np.rint(npy.astype(np.float64) * 255), 0, 255).astype(np.uint8), img)
        seen.add(i)
    assert seen == set(local)


def test_card_metadata_validates_and_names_every_config(two_config_repo, outputs, hub_server):
    from huggingface_hub import DatasetCard

    repo, _ = two_config_repo
    card = DatasetCard.load(repo, repo_type="dataset")
    card.validate(repo_type="dataset")          # the Hub's validate-yaml endpoint
    data = card.data
    # digits come from the UCI repository (CC BY 4.0): the licence is the source's, not a hard-coded one
    assert data.license == "cc-by-4.0" and data.task_categories == ["image-classification"]
    assert data.size_categories == ["n<1K"] and "adversarial-examples" in data.tags
    assert data.pretty_name and data.source_datasets == ["sklearn-digits"]
    assert [c["config_name"] for c in data.configs] == list(TWO)
    assert [c.get("default", False) for c in data.configs] == [True, False]      # load_dataset(repo) works
    for c in data.configs:
        assert c["data_files"] == [{"split": "train", "path": f"data/{c['config_name']}/train-*.parquet"}]
    info = {i["config_name"]: i for i in data.dataset_info}
    assert set(info) == set(TWO)
    for name in TWO:
        feats = [f["name"] for f in info[name]["features"]]
        assert feats[:2] == ["image", "label"] and {"source_index", "source_label", "l2", "success"} <= set(feats)
        source_label = next(f for f in info[name]["features"] if f["name"] == "source_label")
        assert source_label["dtype"]["class_label"]["names"] == {str(i): str(i) for i in range(10)}
        assert info[name]["splits"] == [{"name": "train", "num_bytes": info[name]["dataset_size"], "num_examples": 40}]
    # the prose: per-config numbers from the manifests, the citation, the loading recipes
    text = card.text
    m = json.loads((outputs["d_det"] / "manifest.json").read_text())
    assert m["checkpoint"]["sha256"] in text
    assert f"{100 * m['stats']['mean_success']:.1f}%" in text
    assert f"{m['stats']['mean_l2']:.4g}" in text
    assert f"{100 * m['checkpoint']['metrics']['test_acc']:.1f}%" in text
    assert "@inproceedings{ilyas2019adversarial" in text and "t = (y + 1) mod C" in text
    assert f'load_dataset("{repo}", "d_det", split="train", streaming=True)' in text
    assert f'data_files="hf://datasets/{repo}/webdataset/d_det/*.tar"' in text
    assert "not measured yet" in text and "Not verified yet" in text
    assert "https://arxiv.org/abs/1905.02175" in text and "advgen generate" in text
    assert "](assets/d_det.png)" in text and "](assets/d_rand.png)" in text
    assert "train_test_split(np.arange(1797), test_size=0.3, random_state=0, stratify=d.target)" in text
    assert "Licence" in text and "CC BY 4.0" in text
    assert str(outputs["d_det"].parent) not in text and str(Path.home()) not in card.content   # no local paths


def test_card_cli_renders_the_published_card_byte_for_byte(two_config_repo, outputs, hub_server, tmp_path, capsys):
    from advgen.cards import main

    repo, _ = two_config_repo
    assert main([*map(str, need(outputs, TWO)), "--repo-id", repo, "-o", str(tmp_path / "README.md")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "README.md").read_bytes() == hub_server.files(repo)["README.md"]
    # outputs in another order, rendered again: the same bytes (configs are in the paper's order, no timestamps)
    assert main([str(outputs["d_rand"]), str(outputs["d_det"]), "--repo-id", repo]) == 0
    assert capsys.readouterr().out.encode() == hub_server.files(repo)["README.md"]


def test_second_publish_makes_no_commit(two_config_repo, outputs, hub_server):
    repo, _ = two_config_repo
    before = hub_server.commits(repo)
    p = publish_cli(*need(outputs, TWO), "--repo-id", repo, token=hub_server.token)
    assert hub_server.commits(repo) == before
    assert "no changes" in p.stdout and before[-1] in p.stdout


def test_dry_run_lists_files_and_sizes_and_uploads_nothing(outputs, hub_server, hub_repo_id, capsys):
    n = len(hub_server.requests_log)
    rc, out, err = publish_main(capsys, *need(outputs, TWO), "--repo-id", hub_repo_id, "--dry-run")
    assert rc == 0, err
    assert "README.md" in out and "data/d_det/train-00000.parquet" in out and "webdataset/d_rand/shard-00002.tar" in out
    assert "manifests/d_rand.json" in out and "assets/d_rand.png" in out and "19 files" in out and " kB" in out
    assert hub_server.requests_log[n:] == [] and not hub_server.repo_exists(hub_repo_id)


def test_report_figures_are_uploaded_and_shown_on_the_card(outputs, hub_server, hub_repo_id, tmp_path, capsys,
                                                           monkeypatch):
    """`--report DIR/report.json`: the figures verify drew beside it (Figure 2b, Figure 2a, accuracy against eps) go
    up under assets/<report name>/ and the card shows them."""
    from PIL import Image

    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "report.json").write_text(json.dumps({"name": "my verify", "results": [
        verify_row("det_png", 0.4321, 0.0, manifest_sha256=manifest_sha(outputs["d_det"]))]}))
    for f in ("accuracy.png", "figure2a.png"):
        Image.new("RGB", (8, 4)).save(rep / f)
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    rc, out, err = publish_main(capsys, *need(outputs, TWO), "--repo-id", hub_repo_id, "--report", rep / "report.json")
    assert rc == 0, err
    files = hub_server.files(hub_repo_id)
    assert files["assets/my_verify/accuracy.png"] == (rep / "accuracy.png").read_bytes()
    assert files["assets/my_verify/figure2a.png"] == (rep / "figure2a.png").read_bytes()
    card = files["README.md"].decode()
    assert "](assets/my_verify/accuracy.png)" in card and "](assets/my_verify/figure2a.png)" in card
    assert "robustness.png" not in card                # only the figures that exist


# ------------------------------------------------------------------------------------------------------------------
# All four configs (needs inversion in advgen generate)
# ------------------------------------------------------------------------------------------------------------------

def test_four_configs_publish_and_load(outputs, hub_server, hub_repo_id, hub_api, capsys, monkeypatch):
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    outs = need(outputs, FOUR)
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    rc, out, err = publish_main(capsys, *reversed(outs), "--repo-id", hub_repo_id, "--private")
    assert rc == 0, err
    assert hub_api.dataset_info(hub_repo_id).private
    card = DatasetCard.load(hub_repo_id, repo_type="dataset")
    assert [c["config_name"] for c in card.data.configs] == list(FOUR)
    info = {i["config_name"]: [f["name"] for f in i["features"]] for i in card.data.dataset_info}
    assert {"x0_index", "rel_dist_init", "rel_dist_final"} <= set(info["d_robust"])
    m = json.loads((outputs["d_robust"] / "manifest.json").read_text())
    for k in ("mean_rel_dist_init", "mean_rel_dist_final"):
        assert f"`{k}`" in card.text and f"{m['stats'][k]:.4g}" in card.text
    assert "another training image" in card.text      # the x0 rule
    for name in ("d_robust", "d_nonrobust"):
        ds = load_dataset(hub_repo_id, name, split="train")
        assert_same_as_local(ds, outputs[name], ds.features)
        assert all(r["x0_index"] != r["source_index"] for r in ds)
        stream = load_dataset(hub_repo_id, name, split="train", streaming=True)
        assert_same_as_local(list(stream), outputs[name], stream.features)


# ------------------------------------------------------------------------------------------------------------------
# Refusals: one line, exit 2, nothing uploaded
# ------------------------------------------------------------------------------------------------------------------

def broken_copies(outputs, d: Path) -> dict:
    """Copies of d_det, each broken in one way."""
    src = outputs["d_det"]
    cases = {}
    for case in ("no_manifest", "no_marker", "no_tar", "bad_tar", "bad_parquet", "cut_parquet", "marker_mismatch",
                 "manifest_number", "manifest_shards", "tar_outside", "marker_list"):
        dst = d / case
        shutil.copytree(src, dst)
        cases[case] = dst
    (cases["no_manifest"] / "manifest.json").unlink()
    (cases["no_marker"] / "markers" / "shard-00001.json").unlink()
    (cases["no_tar"] / "shards" / "shard-00002.tar").unlink()
    tar = cases["bad_tar"] / "shards" / "shard-00000.tar"
    data = bytearray(tar.read_bytes())
    data[700] ^= 1
    tar.write_bytes(bytes(data))
    pq = cases["bad_parquet"] / "data" / "train-00001.parquet"
    data = bytearray(pq.read_bytes())
    data[len(data) // 3] ^= 1
    pq.write_bytes(bytes(data))
    pq = cases["cut_parquet"] / "data" / "train-00002.parquet"
    pq.write_bytes(pq.read_bytes()[:-100])
    mk = cases["marker_mismatch"] / "markers" / "shard-00000.json"
    marker = json.loads(mk.read_text())
    marker["count"] += 1
    mk.write_text(json.dumps(marker))
    (cases["manifest_number"] / "manifest.json").write_text("5")
    for case, change in (("manifest_shards", lambda m: m.update(shards=[1, 2, 3])),
                         ("tar_outside", lambda m: m["shards"][0].update(tar="../../outside.tar"))):
        m = json.loads((cases[case] / "manifest.json").read_text())
        change(m)
        (cases[case] / "manifest.json").write_text(json.dumps(m))
    (cases["marker_list"] / "markers" / "shard-00001.json").write_text("[1, 2]")
    return cases


EXPECTED = {"no_manifest": "no manifest.json", "no_marker": "shard 1 has no marker",
            "no_tar": "shards/shard-00002.tar is missing",
            "bad_tar": "shards/shard-00000.tar does not match its sha256",
            "bad_parquet": "data/train-00001.parquet does not match its sha256",
            "cut_parquet": "data/train-00002.parquet is not a readable parquet file",
            "marker_mismatch": "marker and manifest disagree on 'count'",
            "manifest_number": "manifest.json is a JSON int, not an object; it was not written by advgen generate",
            "manifest_shards": "manifest.json lists shard 0 wrongly (a JSON int, not an object)",
            "tar_outside": "manifest.json lists shard 0 wrongly ('tar' is '../../outside.tar', not "
                           "'shards/shard-00000.tar')",
            "marker_list": "marker markers/shard-00001.json is not a shard marker (a JSON list, not an object)"}


def test_incomplete_or_modified_outputs_are_refused_before_any_upload(outputs, two_config_repo, hub_server, tmp_path,
                                                                       capsys, monkeypatch):
    repo, _ = two_config_repo
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    before = hub_server.commits(repo)
    n = len(hub_server.requests_log)
    from advgen.cli import main

    for case, out in broken_copies(outputs, tmp_path).items():
        rc, _, err = publish_main(capsys, out, outputs["d_rand"], "--repo-id", repo)
        assert EXPECTED[case] in one_line_error(rc, err), (case, err)
        rc = main(["card", str(out), str(outputs["d_rand"])])      # the card checks what publish checks
        out_text, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        assert rc == 2 and out_text == "" and len(lines) == 1 and lines[0].startswith("advgen card: error: "), err
        assert EXPECTED[case] in lines[0], (case, err)
    # two outputs of the same config
    dup = tmp_path / "dup"
    shutil.copytree(outputs["d_det"], dup)
    rc, _, err = publish_main(capsys, outputs["d_det"], dup, "--repo-id", repo)
    assert "both config 'd_det'" in one_line_error(rc, err)
    rc, _, err = publish_main(capsys, tmp_path / "nowhere", "--repo-id", repo)
    assert "no such output directory" in one_line_error(rc, err)
    assert hub_server.requests_log[n:] == []      # refused before any request
    assert hub_server.commits(repo) == before


def test_wrong_token_is_one_clear_line(outputs, two_config_repo, hub_server, hub_repo_id, capsys, monkeypatch):
    repo, _ = two_config_repo
    before = hub_server.commits(repo)
    p = publish_cli(*need(outputs, TWO), "--repo-id", repo, token="hf_wrong", check=False)
    line = one_line_error(p.returncode, p.stderr)
    assert "rejected the token (401" in line and "hf_wrong" not in p.stdout + p.stderr
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")    # a repo that would be created: not created
    rc, _, err = publish_main(capsys, *need(outputs, TWO), "--repo-id", hub_repo_id)
    assert "rejected the token (401" in one_line_error(rc, err)
    assert hub_server.commits(repo) == before and not hub_server.repo_exists(hub_repo_id)


def test_read_only_and_missing_token(outputs, two_config_repo, hub_server, capsys, monkeypatch):
    repo, _ = two_config_repo
    before = hub_server.commits(repo)
    rc, _, err = publish_main(capsys, *need(outputs, TWO), "--repo-id", repo, "--token", hub_server.read_token)
    assert "read-only" in one_line_error(rc, err) and hub_server.read_token not in err
    monkeypatch.delenv("HF_TOKEN", raising=False)     # and HF_HOME (the test Hub's temp dir) has no stored login
    rc, _, err = publish_main(capsys, *need(outputs, TWO), "--repo-id", repo)
    assert "no Hub token" in one_line_error(rc, err)
    assert hub_server.commits(repo) == before


def test_unknown_revision_is_refused_unless_create_branch(outputs, two_config_repo, hub_server, capsys, monkeypatch):
    repo, _ = two_config_repo
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    before = hub_server.commits(repo)
    rc, _, err = publish_main(capsys, *need(outputs, TWO), "--repo-id", repo, "--revision", "v2")
    assert "has no branch 'v2'" in one_line_error(rc, err) and "--create-branch" in err
    assert hub_server.commits(repo) == before
    with pytest.raises(KeyError):
        hub_server.commits(repo, revision="v2")
    # explicit --create-branch: the branch gets the same files, the card loads from the branch
    rc, out, err = publish_main(capsys, *need(outputs, TWO), "--repo-id", repo, "--revision", "v2",
                                "--create-branch")
    assert rc == 0, err
    assert hub_server.commits(repo) == before     # main untouched
    readme = hub_server.files(repo, revision="v2")["README.md"].decode()
    assert 'revision="v2"' in readme and f"hf://datasets/{repo}@v2/webdataset/" in readme


def test_publish_refuses_to_silently_drop_configs_and_prunes_stale_shards(outputs, hub_server, hub_repo_id, capsys,
                                                                          monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", hub_server.token)
    det, rand = need(outputs, TWO)
    assert publish_main(capsys, det, rand, "--repo-id", hub_repo_id)[0] == 0
    n = len(hub_server.commits(hub_repo_id))
    rc, _, err = publish_main(capsys, det, "--repo-id", hub_repo_id)
    assert "d_rand" in one_line_error(rc, err) and "--prune" in err
    assert len(hub_server.commits(hub_repo_id)) == n
    # a d_det with fewer shards (the output cut to its first two shards): the extra files go in the same commit
    small = tmp_path / "small"
    shutil.copytree(det, small)
    m = json.loads((small / "manifest.json").read_text())
    m["shards"], m["num_shards"] = m["shards"][:2], 2
    m["count"] = sum(s["count"] for s in m["shards"])
    (small / "manifest.json").write_text(json.dumps(m))
    for f in ("shards/shard-00002.tar", "data/train-00002.parquet", "markers/shard-00002.json"):
        (small / f).unlink()
    assert publish_main(capsys, small, "--repo-id", hub_repo_id, "--prune")[0] == 0
    files = hub_server.files(hub_repo_id)
    assert len(hub_server.commits(hub_repo_id)) == n + 1
    assert sorted(f for f in files if f.startswith(("data/", "webdataset/", "manifests/"))) == [
        "data/d_det/train-00000.parquet", "data/d_det/train-00001.parquet", "manifests/d_det.json",
        "webdataset/d_det/shard-00000.tar", "webdataset/d_det/shard-00001.tar"]


# ------------------------------------------------------------------------------------------------------------------
# Cards from verification reports, and agreement with the writers
# ------------------------------------------------------------------------------------------------------------------

def manifest_sha(out: Path) -> str:
    return hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()


def verify_row(dataset, std, robust, **kw):
    """A results entry shaped like advgen.verify.summarise writes it."""
    return {"dataset": dataset, "kind": "generated", "manifest_sha256": None, "title": dataset, "data": "somewhere (png uint8, 40 samples)",
            "use_npy": False, "model": "small_cnn", "std_acc": std, "std_acc_std": 0.011, "robust_acc": robust,
            "robust_acc_std": 0.0, "eps": 0.25, "norm": "l2", "paper_std_acc": 0.437, "paper_robust_acc": None,
            "expected": {"std_acc": [0.2, 0.6], "robust_acc": None}, "passed": True, "failures": [],
            "seeds": [0, 1], "seconds": 12.3, **kw}


def test_card_shows_verification_reports_beside_the_paper(outputs, tmp_path):
    """Rows attach to the output whose manifest they name; a row of another output, or of none, stays out; a baseline
    shows once however many reports carry it."""
    from advgen.cards import render_card

    det, rand, robust = need(outputs, ("d_det", "d_rand", "d_robust"))
    own = tmp_path / "det"                        # a copy, so the shared output's card stays as published
    shutil.copytree(det, own)
    baseline = verify_row("D", 0.98, 0.5, kind="baseline_std", title="D (standard training)", paper_std_acc=0.953,
                          paper_robust_acc=0.045, seeds=[0])
    (own / "verify").mkdir()
    (own / "verify" / "report.json").write_text(json.dumps({"results": [
        verify_row("det_png", 0.4321, 0.0, manifest_sha256=manifest_sha(own)),
        verify_row("det_npy", 0.45, 0.01, use_npy=True, manifest_sha256=manifest_sha(own)),
        verify_row("robust", 0.7, 0.3, manifest_sha256=manifest_sha(robust)),   # an output not in this card
        verify_row("unknown", 0.5, 0.3),                                        # no output named: never guessed
        baseline]}))
    other = tmp_path / "report.json"              # an explicit --report
    other.write_text(json.dumps({"results": [
        verify_row("rand", 0.8, 0.02, paper_std_acc=0.633, manifest_sha256=manifest_sha(rand)), baseline]}))
    text = render_card([own, rand], [other], repo_id="u/r")
    assert ("| `d_det` | small_cnn (2 seeds) | png | 43.2% ± 1.1 | 43.7% | 0.0% ± 0.0 | — | 0.25 | std 20.0%–60.0% "
            "| yes | 12 s |") in text
    assert "| `d_det` | small_cnn (2 seeds) | float32 (npy) | 45.0% ± 1.1 |" in text
    assert "| `d_rand` | small_cnn (2 seeds) | png | 80.0% ± 1.1 | 63.3% |" in text
    assert "70.0%" not in text and "50.0% ± 1.1" not in text
    assert text.count("| D (standard training) | small_cnn | png | 98.0% | 95.3% | 50.0% | 4.5% |") == 1
    assert "`d_det`, small_cnn: std. accuracy 43.2% vs 45.0% (-1.8 points)" in text
    assert "not measured yet" not in text and "Not verified yet" not in text
    assert str(tmp_path) not in text


def test_card_and_publish_import_no_torch():
    """`advgen card` / `advgen publish` read the output layout through advgen.writers.layout, which needs no torch."""
    import subprocess
    import sys

    code = ("import sys, advgen.cards, advgen.publish, advgen.writers.layout; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


# ------------------------------------------------------------------------------------------------------------------
# The token is nowhere (runs last: it scans what the tests above left)
# ------------------------------------------------------------------------------------------------------------------

def test_token_is_never_printed_logged_or_written(outputs, hub_server, tmp_path_factory):
    secrets = [hub_server.token.encode(), hub_server.read_token.encode(), b"hf_wrong"]
    assert CAPTURED, "the tests above ran no publish"
    for text in CAPTURED:
        for s in secrets:
            assert s.decode() not in text
    roots = [tmp_path_factory.getbasetemp(), Path(os.environ["HF_HOME"])]
    roots += list(outputs.values())
    scanned = 0
    for root in roots:
        for p in Path(root).rglob("*"):
            if p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                scanned += 1
                for s in secrets:
                    assert s not in data, f"token found in {p}"
    assert scanned > 50
    for (kind, repo_id), repo in list(hub_server.repos.items()):     # stored files and commit messages
        for rev in repo.branches:
            for path, content in hub_server.files(repo_id, kind, revision=rev).items():
                for s in secrets:
                    assert s not in content and s.decode() not in path, f"token in {repo_id}@{rev}:{path}"
            for oid in hub_server.commits(repo_id, kind, revision=rev):
                c = hub_server.commit_info(repo_id, oid, kind)
                assert all(s.decode() not in c.title + c.message for s in secrets)
    # the log keeps method, path and headers (no bodies: what bodies carry is in the stored files and commits)
    for r in hub_server.requests_log:
        assert all(s.decode() not in r.path for s in secrets), r.path
        for name, value in r.headers.items():
            if name != "authorization":
                assert all(s.decode() not in value for s in secrets), (name, value)


# ------------------------------------------------------------------------------------------------------------------
# Verify from the Hub, and the card picking up `advgen verify`'s report by itself
# ------------------------------------------------------------------------------------------------------------------

def test_verify_a_published_config_by_hub_id_and_card_finds_the_report(two_config_repo, outputs, hub_server,
                                                                         tmp_path, capsys):
    """`advgen verify` on `repo + config` trains exactly what it trains on the local output (same pixels, same order,
    same seed), and the copy of its report in OUT/verify/ puts the row in that output's card."""
    from advgen.cards import render_card

    repo, _ = two_config_repo
    local = tmp_path / "d_det"
    shutil.copytree(outputs["d_det"], local)      # the shared output's card stays as published
    recipe = write_yaml(tmp_path / "verify.yaml", {
        "name": "hub_check", "source": {"kind": "digits", "limit": 300},
        "model": {"arch": "small_cnn", "width": 8, "feature_dim": 16},
        "train": {"epochs": 2, "batch_size": 16, "optimizer": "adam", "lr": 0.003, "weight_decay": 0.0,
                  "milestones": []},
        "eval": {"eps": 0.5, "steps": 2}, "seeds": [0], "report_dir": str(tmp_path / "report"), "samples": 4,
        "datasets": {"hub": {"path": repo, "config": "d_det"}, "local": {"path": str(local)}}})
    from advgen.cli import main

    capsys.readouterr()
    assert main(["verify", str(recipe)]) == 0
    out, err = capsys.readouterr()
    CAPTURED.append(out + err)
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    hub, loc = report["results"]
    assert hub["data"].startswith(f"{repo}:d_det (hub, 40 samples)") and loc["data"].startswith(str(local))
    for k in ("std_acc", "robust_acc"):
        assert hub[k] == loc[k]
    assert (tmp_path / "report" / "samples_hub.png").is_file()

    # the rows name what they measured: the local manifest, and the manifest publish uploaded for the Hub config
    assert loc["manifest_sha256"] == manifest_sha(local)
    assert hub["manifest_sha256"] == hashlib.sha256(hub_server.files(repo)["manifests/d_det.json"]).hexdigest()
    assert json.loads((local / "verify" / "hub_check.json").read_text()) == report
    text = render_card([local, outputs["d_rand"]], repo_id=repo)
    assert text.count("| `d_det` | small_cnn(w8,f16) |") == 2     # the local row, and the Hub row of this config

"""The local Hub (tests/support/hubserver.py) exercised through the real huggingface_hub and datasets clients: what
`advgen publish` and the loaders of its output call."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")
datasets = pytest.importorskip("datasets")
PIL_Image = pytest.importorskip("PIL.Image")

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, HfFileSystem, hf_hub_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

README = """---
configs:
- config_name: a
  data_files:
  - split: train
    path: data/a.parquet
- config_name: b
  data_files:
  - split: train
    path: data/b.parquet
---
# Test dataset
"""

COLORS = {"a": ["red", "blue", "green"], "b": ["white", "black"]}
LABELS = {"a": [0, 1, 1], "b": [1, 0]}


def _png(color: str, size=(4, 3)) -> bytes:
    buf = io.BytesIO()
    PIL_Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _features():
    return datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"]), "name": datasets.Value("string")}
    )


def _write_parquet(path: Path, config: str) -> None:
    rows = {
        "image": [{"bytes": _png(c), "path": None} for c in COLORS[config]],
        "label": LABELS[config],
        "name": COLORS[config],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(rows, features=_features()).to_parquet(str(path))


def _write_tar(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, (color, cls) in {"x": ("red", 1), "y": ("blue", 0)}.items():
            for ext, data in (
                ("png", _png(color)),
                ("cls", str(cls).encode()),
                ("json", json.dumps({"color": color}).encode()),
            ):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def _check_rows(rows, config):
    assert [r["name"] for r in rows] == COLORS[config]
    assert [r["label"] for r in rows] == LABELS[config]
    for row in rows:
        image = row["image"]
        assert image.size == (4, 3)
        assert image.convert("RGB").getpixel((0, 0)) == PIL_Image.new("RGB", (1, 1), row["name"]).getpixel((0, 0))


def _check_features(features):
    assert isinstance(features["image"], datasets.Image)
    assert isinstance(features["label"], datasets.ClassLabel)
    assert features["label"].names == ["cat", "dog"]


# ---------------------------------------------------------------------------------------------------------------------
# A dataset repo shared by the read-only tests of this module
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uploaded(hub_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dataset")
    (folder / "README.md").write_text(README)
    _write_parquet(folder / "data" / "a.parquet", "a")
    _write_parquet(folder / "data" / "b.parquet", "b")
    _write_tar(folder / "shards" / "000.tar")

    api = HfApi(token=hub_server.token)
    repo_id = f"{hub_server.user}/shared-dataset"
    start = len(hub_server.requests_log)
    url = api.create_repo(repo_id, repo_type="dataset")
    assert url == f"{hub_server.url}/datasets/{repo_id}"
    create_log = hub_server.requests_log[start:]
    start = len(hub_server.requests_log)
    info = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="dataset", commit_message="Add data")
    upload_log = hub_server.requests_log[start:]
    local = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return {
        "repo_id": repo_id,
        "folder": folder,
        "local": local,
        "commit": info.oid,
        "create_log": create_log,
        "upload_log": upload_log,
    }


def test_create_repo_and_exist_ok(hub_server, hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id, repo_type="dataset")
    commits = hub_server.commits(hub_repo_id)
    assert len(commits) == 1 and len(commits[0]) == 40  # the Hub's "initial commit" with a .gitattributes
    assert hub_api.list_repo_files(hub_repo_id, repo_type="dataset") == [".gitattributes"]

    # exist_ok=True: the server answers 409 and the client swallows it
    again = hub_api.create_repo(hub_repo_id, repo_type="dataset", exist_ok=True)
    assert again == f"{hub_server.url}/datasets/{hub_repo_id}"
    with pytest.raises(HfHubHTTPError) as err:
        hub_api.create_repo(hub_repo_id, repo_type="dataset")
    assert err.value.response.status_code == 409
    assert hub_server.commits(hub_repo_id) == commits

    info = hub_api.dataset_info(hub_repo_id)
    assert info.id == hub_repo_id and info.sha == commits[-1] and info.private is False
    assert hub_api.whoami()["name"] == hub_server.user


def test_upload_folder_request_sequence(hub_server, uploaded):
    calls = [(r.method, r.path.split("?")[0], r.status) for r in uploaded["upload_log"]]
    repo = uploaded["repo_id"]
    # README.md is validated first (twice: when listing the folder and again in create_commit) ...
    assert calls[0] == ("POST", "/api/validate-yaml", 200)
    kinds = [path for _, path, _ in calls]
    # ... then preupload (upload modes + remote oids), the LFS batch for binary files, one PUT + verify per LFS
    # object, and a single NDJSON commit.
    i_pre = kinds.index(f"/api/datasets/{repo}/preupload/main")
    i_batch = kinds.index(f"/datasets/{repo}.git/info/lfs/objects/batch")
    i_commit = kinds.index(f"/api/datasets/{repo}/commit/main")
    assert i_pre < i_batch < i_commit == len(calls) - 1
    puts = [c for c in calls if c[0] == "PUT"]
    assert len(puts) == 3 and all(c[1].startswith("/__lfs/upload/") and c[2] == 200 for c in puts)
    assert all(status == 200 for _, _, status in calls)

    # parquet & tar went through LFS, README.md as a regular file (as on huggingface.co)
    assert hub_server.lfs_files(repo) == {"data/a.parquet", "data/b.parquet", "shards/000.tar"}
    assert hub_server.commits(repo)[-1] == uploaded["commit"]

    # the token goes to the Hub API but never to the (pre-signed) LFS upload URLs
    auth = f"Bearer {hub_server.token}"
    for r in uploaded["upload_log"]:
        if r.path.startswith("/__lfs/upload/"):
            assert "authorization" not in r.headers
        else:
            assert r.headers.get("authorization") == auth


def test_files_listing_and_download(hub_server, uploaded):
    repo, local = uploaded["repo_id"], uploaded["local"]
    api = HfApi()  # anonymous: public repo
    assert hub_server.files(repo) == {".gitattributes": hub_server.files(repo)[".gitattributes"], **local}
    assert sorted(api.list_repo_files(repo, repo_type="dataset")) == sorted([".gitattributes", *local])

    tree = {e.path: e for e in api.list_repo_tree(repo, "data", repo_type="dataset")}
    assert set(tree) == {"data/a.parquet", "data/b.parquet"}
    assert tree["data/a.parquet"].size == len(local["data/a.parquet"])
    assert tree["data/a.parquet"].lfs is not None and tree["data/a.parquet"].lfs.size == len(local["data/a.parquet"])
    paths = api.get_paths_info(repo, ["README.md", "data", "missing.txt"], repo_type="dataset")
    assert [(p.path, type(p).__name__) for p in paths] == [("README.md", "RepoFile"), ("data", "RepoFolder")]

    readme = hf_hub_download(repo, "README.md", repo_type="dataset")
    assert Path(readme).read_bytes() == local["README.md"]
    assert Path(readme).parent.name == uploaded["commit"]  # cached under the commit sha from X-Repo-Commit
    shard = hf_hub_download(repo, "shards/000.tar", repo_type="dataset", revision=uploaded["commit"])
    assert Path(shard).read_bytes() == local["shards/000.tar"]

    # Range requests through HfFileSystem (206)
    fs = HfFileSystem()
    with fs.open(f"datasets/{repo}/data/b.parquet", "rb", block_size=16) as f:
        f.seek(4)
        assert f.read(10) == local["data/b.parquet"][4:14]
    assert any(r.status == 206 for r in hub_server.requests_matching(r"/resolve/.*/data/b\.parquet", "GET"))


def test_load_dataset_config_a(uploaded):
    ds = datasets.load_dataset(uploaded["repo_id"], "a", split="train")
    _check_features(ds.features)
    _check_rows(list(ds), "a")


def test_load_dataset_config_b_streaming(uploaded):
    ids = datasets.load_dataset(uploaded["repo_id"], "b", streaming=True)
    assert list(ids) == ["train"]
    _check_features(ids["train"].features)
    _check_rows(list(ids["train"]), "b")


def test_load_webdataset_from_hf_url(uploaded):
    ds = datasets.load_dataset(
        "webdataset", data_files=f"hf://datasets/{uploaded['repo_id']}/shards/*.tar", split="train"
    )
    rows = sorted(ds, key=lambda r: r["__key__"])
    assert [r["__key__"] for r in rows] == ["x", "y"]
    assert [r["cls"] for r in rows] == [1, 0]
    assert [r["json"] for r in rows] == [{"color": "red"}, {"color": "blue"}]
    assert rows[0]["png"].size == (4, 3)


def test_identical_upload_is_a_noop(hub_server, hub_api, hub_repo_id, tmp_path):
    (tmp_path / "README.md").write_text("# hello\n")
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * 8)  # binary -> LFS
    hub_api.create_repo(hub_repo_id, repo_type="dataset")
    first = hub_api.upload_folder(folder_path=tmp_path, repo_id=hub_repo_id, repo_type="dataset")
    commits = hub_server.commits(hub_repo_id)

    start = len(hub_server.requests_log)
    second = hub_api.upload_folder(folder_path=tmp_path, repo_id=hub_repo_id, repo_type="dataset")
    log = [(r.method, r.path.split("?")[0]) for r in hub_server.requests_log[start:]]
    # preupload reports the remote oids, the client sees nothing changed: no LFS upload, no /commit call, and it
    # returns the current head (read from /revision/main) instead of creating an empty commit.
    assert second.oid == first.oid == commits[-1]
    assert hub_server.commits(hub_repo_id) == commits
    assert not [c for c in log if c[0] == "PUT" or c[1].endswith("/commit/main")]
    assert ("GET", f"/api/datasets/{hub_repo_id}/revision/main") in log
    # create_commit with no operation at all behaves the same
    assert hub_api.create_commit(hub_repo_id, [], commit_message="nothing", repo_type="dataset").oid == first.oid
    assert hub_server.commits(hub_repo_id) == commits

    # change one file: exactly one new commit, the unchanged LFS file is neither re-uploaded nor re-committed
    (tmp_path / "README.md").write_text("# hello again\n")
    start = len(hub_server.requests_log)
    third = hub_api.upload_folder(folder_path=tmp_path, repo_id=hub_repo_id, repo_type="dataset")
    assert hub_server.commits(hub_repo_id) == [*commits, third.oid]
    assert not [r for r in hub_server.requests_log[start:] if r.method == "PUT"]
    assert hub_server.files(hub_repo_id)["README.md"] == b"# hello again\n"


def test_wrong_token_fails_and_commits_nothing(hub_server, hub_api, hub_repo_id, tmp_path):
    (tmp_path / "file.txt").write_text("content")
    hub_api.create_repo(hub_repo_id, repo_type="dataset")
    commits = hub_server.commits(hub_repo_id)

    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token="hf_wrong_token").upload_folder(folder_path=tmp_path, repo_id=hub_repo_id, repo_type="dataset")
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as err:  # anonymous
        HfApi().upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=hub_repo_id, repo_type="dataset")
    assert err.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as err:  # read-only token
        HfApi(token=hub_server.read_token).upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=hub_repo_id, repo_type="dataset"
        )
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError):
        HfApi(token="hf_wrong_token").whoami()
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(token="hf_wrong_token").create_repo(f"{hub_repo_id}-bis", repo_type="dataset")
    assert err.value.response.status_code == 401

    assert hub_server.commits(hub_repo_id) == commits
    assert not hub_server.repo_exists(f"{hub_repo_id}-bis")
    assert any(r.headers.get("authorization") == "Bearer hf_wrong_token" for r in hub_server.requests_log)


def test_not_found_errors(hub_server, hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id, repo_type="dataset")
    with pytest.raises(RevisionNotFoundError):
        hub_api.dataset_info(hub_repo_id, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hub_api.list_repo_files(hub_repo_id, repo_type="dataset", revision="0" * 40)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(hub_repo_id, ".gitattributes", repo_type="dataset", revision="no-such-branch")
    with pytest.raises(RepositoryNotFoundError):
        hub_api.dataset_info(f"{hub_repo_id}-missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(f"{hub_repo_id}-missing", "README.md", repo_type="dataset")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(hub_repo_id, "missing.txt", repo_type="dataset")
    with pytest.raises(EntryNotFoundError):
        hub_api.create_commit(
            hub_repo_id, [CommitOperationDelete("missing.txt")], commit_message="rm", repo_type="dataset"
        )
    assert not hub_api.file_exists(hub_repo_id, "missing.txt", repo_type="dataset")
    assert hub_api.revision_exists(hub_repo_id, "main", repo_type="dataset")
    assert not hub_api.revision_exists(hub_repo_id, "nope", repo_type="dataset")


def test_revisions_branches_and_parent_commit(hub_server, hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id, repo_type="dataset")
    c1 = hub_api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=hub_repo_id, repo_type="dataset")
    c2 = hub_api.create_commit(
        hub_repo_id,
        [CommitOperationAdd("f.txt", b"v2"), CommitOperationAdd("g/h.txt", b"h")],
        commit_message="v2",
        commit_description="second version",
        repo_type="dataset",
        parent_commit=c1.oid,
    )
    assert hub_server.commits(hub_repo_id)[-2:] == [c1.oid, c2.oid]

    # revision = a commit sha (full or short) sees the old tree
    assert hub_api.list_repo_files(hub_repo_id, repo_type="dataset", revision=c1.oid) == [".gitattributes", "f.txt"]
    old = hf_hub_download(hub_repo_id, "f.txt", repo_type="dataset", revision=c1.oid[:10])
    assert Path(old).read_bytes() == b"v1"
    assert hub_api.dataset_info(hub_repo_id, revision=c1.oid).sha == c1.oid

    assert hub_server.commit_info(hub_repo_id, c2.oid).title == "v2"
    assert hub_server.commit_info(hub_repo_id, c2.oid).message == "second version"

    # stale parent_commit -> 412, nothing committed
    with pytest.raises(HfHubHTTPError) as err:
        hub_api.create_commit(
            hub_repo_id,
            [CommitOperationAdd("f.txt", b"v3")],
            commit_message="v3",
            repo_type="dataset",
            parent_commit=c1.oid,
        )
    assert err.value.response.status_code == 412
    assert hub_server.commits(hub_repo_id)[-1] == c2.oid

    # branches and refs (what `advgen publish --revision` reads and creates)
    hub_api.create_branch(hub_repo_id, branch="dev", revision=c1.oid, repo_type="dataset")
    c3 = hub_api.upload_file(
        path_or_fileobj=b"dev", path_in_repo="f.txt", repo_id=hub_repo_id, repo_type="dataset", revision="dev"
    )
    refs = hub_api.list_repo_refs(hub_repo_id, repo_type="dataset")
    assert {b.name: b.target_commit for b in refs.branches} == {"main": c2.oid, "dev": c3.oid}
    assert refs.tags == []
    assert hub_server.files(hub_repo_id, revision="dev")["f.txt"] == b"dev"
    assert hub_server.files(hub_repo_id)["f.txt"] == b"v2"

    # pagination: the client follows the Link header
    page_size = hub_server.page_size
    hub_server.page_size = 1
    try:
        start = len(hub_server.requests_log)
        files = hub_api.list_repo_files(hub_repo_id, repo_type="dataset")
        assert sorted(files) == [".gitattributes", "f.txt", "g/h.txt"]
        assert len([r for r in hub_server.requests_log[start:] if "/tree/" in r.path]) == 4  # 4 entries incl. g/
    finally:
        hub_server.page_size = page_size


def test_private_repo(hub_server, hub_api, hub_repo_id):
    hub_api.create_repo(hub_repo_id, repo_type="dataset", private=True)
    hub_api.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id=hub_repo_id, repo_type="dataset")
    assert hub_api.dataset_info(hub_repo_id).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi().dataset_info(hub_repo_id)  # anonymous
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=hub_server.other_token).dataset_info(hub_repo_id)  # another user
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(hub_repo_id, "s.txt", repo_type="dataset")
    path = hf_hub_download(hub_repo_id, "s.txt", repo_type="dataset", token=hub_server.token)
    assert Path(path).read_bytes() == b"secret"

"""Publish one or more generated outputs as ONE multi-config dataset repo on the Hub, in a single commit.

    advgen publish runs/digits_det runs/digits_rand --repo-id me/advgen-digits [--private] [--revision BRANCH]
    advgen publish runs/digits_det --repo-id me/advgen-digits --dry-run      # list files and sizes, upload nothing

Repo layout (cards.repo_layout; the card's `configs:` point at the parquet files):

    README.md                                  the card (advgen/cards.py)
    data/<config>/train-NNNNN.parquet          load_dataset(repo, config[, streaming=True])
    webdataset/<config>/shard-NNNNN.tar        WebDataset shards: load_dataset("webdataset", data_files=
                                                   "hf://datasets/<repo>/webdataset/<config>/*.tar")
    manifests/<config>.json                    provenance: resolved recipe, checkpoint sha256, shard checksums
                                               (absolute local paths made relative to the output or cut to a name)
    assets/<config>.png                        the sample grid `generate` drew (preview.png), shown on the card
    recipes/<config>.yaml                      the recipe that made it: advgen generate recipes/<config>.yaml

<config> is manifest["dataset"] (d_det, d_rand, d_robust, d_nonrobust). Every output is checked before anything
is sent (manifest present, every shard's marker present and agreeing with the manifest, sha256 of every file as
recorded, one output per config); a failed check is a one-line error and exit 2. Then: token check (whoami),
create_repo(exist_ok), the branch must exist (or --create-branch), and one create_commit holding every file, plus
deletions of files of the published configs that are no longer part of them (a config that shrank). A publish
that would leave files of other configs in the repo (a card that does not list them) is refused, unless --prune
deletes them; other files (e.g. .gitattributes) are never touched. huggingface_hub skips files whose content the repo
already has, and the card is byte-stable, so publishing unchanged outputs again makes no commit.

The token (--token, else HF_TOKEN or the stored login, via huggingface_hub.get_token) is only handed to
huggingface_hub: it is never printed, logged or written anywhere by advgen.

Cost: checking is dominated by sha256 of the files (~1 s per GB); four digits configs (~45 MB) publish to a local
test Hub in a few seconds (see tests/test_publish.py).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from advgen.cards import (CONFIGS, PUBLIC_RECIPE, REPO_ASSETS_DIR, REPO_DATA_DIR, REPO_MANIFEST_DIR, REPO_RECIPE_DIR,
                          REPO_WDS_DIR, ConfigSource, human_size, load_configs, public_manifest, public_recipe,
                          render_card, report_figures, repo_layout)
from advgen.cli import parser, run
from advgen.errors import CardError, OutputError, PublishError
from advgen.writers.layout import MANIFEST

MANAGED_DIRS = (REPO_DATA_DIR, REPO_WDS_DIR, REPO_MANIFEST_DIR, REPO_ASSETS_DIR, REPO_RECIPE_DIR)


@dataclass(frozen=True)
class RepoFile:
    path_in_repo: str
    size: int
    local: Optional[Path] = None      # a file of an output...
    data: Optional[bytes] = None      # ...or bytes made here (the card, the public manifest)

    def content(self):
        return self.data if self.data is not None else str(self.local)


# ------------------------------------------------------------------------------------------------------------------
# Checking outputs (no network)
# ------------------------------------------------------------------------------------------------------------------

def plan_files(cfgs: list[ConfigSource], card: str) -> list[RepoFile]:
    files = [RepoFile("README.md", len(card.encode()), data=card.encode())]
    for c in cfgs:
        for path_in_repo, rel in repo_layout(c).items():
            if rel in (MANIFEST, PUBLIC_RECIPE):      # made here: the checked manifest / its recipe, no local paths
                data = public_manifest(c) if rel == MANIFEST else public_recipe(c)
                files.append(RepoFile(path_in_repo, len(data), data=data))
            else:
                local = c.out / rel
                files.append(RepoFile(path_in_repo, local.stat().st_size, local=local))
    return files


def prepare(outputs, reports=(), repo_id: Optional[str] = None, revision: Optional[str] = None):
    """Load and check every output (cards.load_configs checks them), render the card; returns (configs, files).
    No network."""
    try:
        cfgs = load_configs(outputs)
        card = render_card(outputs, reports, repo_id=repo_id, revision=revision, cfgs=cfgs)
    except (CardError, OutputError) as e:
        raise PublishError(str(e)) from None
    files = plan_files(cfgs, card)
    files += [RepoFile(f["path"], f["local"].stat().st_size, local=f["local"]) for f in report_figures(reports)]
    return cfgs, files


def print_files(files: list[RepoFile], deletions=(), stream=None):
    stream = stream or sys.stdout      # looked up at the call: sys.stdout may have been replaced since the import
    width = max(len(f.path_in_repo) for f in files)
    for f in files:
        print(f"  {f.path_in_repo:<{width}}  {human_size(f.size):>9}", file=stream)
    for p in deletions:
        print(f"  {p:<{width}}  {'delete':>9}", file=stream)
    print(f"  {len(files)} files, {human_size(sum(f.size for f in files))}"
          + (f", {len(deletions)} deletions" if deletions else ""), file=stream)


# ------------------------------------------------------------------------------------------------------------------
# Talking to the Hub
# ------------------------------------------------------------------------------------------------------------------

def _scrub(text: str, token: Optional[str]) -> str:
    text = " ".join(str(text).split())          # one line
    return text.replace(token, "***") if token else text


def _hub_error(e: Exception, token: Optional[str], what: str) -> PublishError:
    """A one-line message for an error from huggingface_hub (its status and the server's message)."""
    from huggingface_hub.errors import HfHubHTTPError

    status = getattr(getattr(e, "response", None), "status_code", None) if isinstance(e, HfHubHTTPError) else None
    server = getattr(e, "server_message", None) or ""
    detail = _scrub(server or str(e).split("\n")[0], token)
    if status == 401:
        return PublishError(f"{what}: the Hub rejected the token (401: {detail}); pass a valid write token with "
                            "--token or HF_TOKEN, or run `hf auth login`")
    if status == 403:
        return PublishError(f"{what}: the token may not write there (403: {detail}); use a write token of the "
                            "repo's owner")
    return PublishError(f"{what}: {type(e).__name__}" + (f" ({status})" if status else "") + f": {detail}")


def resolve_token(explicit: Optional[str]) -> str:
    from huggingface_hub import get_token

    token = explicit or get_token()
    if not token:
        raise PublishError("no Hub token: pass --token, set HF_TOKEN, or log in with `hf auth login`")
    return token


def publish(cfgs: list[ConfigSource], files: list[RepoFile], repo_id: str, token: str, *, private: bool = False,
            revision: Optional[str] = None, create_branch: bool = False, prune: bool = False) -> dict:
    """Upload in one commit; returns {url, commit, changed, deleted, seconds}. Raises PublishError."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub import errors
    from huggingface_hub.errors import HfHubHTTPError

    # The HTTP library's own errors (connection refused, DNS, timeouts): huggingface_hub re-exports its base class.
    transport_errors = (OSError, getattr(errors, "HTTPError", OSError))

    branch = revision or "main"
    api = HfApi(token=token)
    t0 = time.perf_counter()
    try:
        who = api.whoami()
    except HfHubHTTPError as e:
        raise _hub_error(e, token, "checking the token") from None
    except transport_errors as e:
        raise PublishError(f"could not reach the Hub at {api.endpoint}: {_scrub(e, token)}") from None
    role = ((who.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise PublishError(f"the token of {who.get('name')} is read-only; publishing needs a write token")
    try:
        exists = api.repo_exists(repo_id, repo_type="dataset")
        if exists:
            info = api.dataset_info(repo_id)
            if private and not info.private:
                raise PublishError(f"{repo_id} exists and is public but --private was given; make it private first "
                                   "(repo settings) or drop --private")
            refs = api.list_repo_refs(repo_id, repo_type="dataset")
            branches = {b.name for b in refs.branches}
            if branch not in branches:
                if branch in {t.name for t in refs.tags}:
                    raise PublishError(f"revision {branch!r} of {repo_id} is a tag; publish to a branch")
                if not create_branch:
                    raise PublishError(f"{repo_id} has no branch {branch!r} (branches: {', '.join(sorted(branches))}); "
                                       "pass --create-branch to create it")
        elif branch != "main" and not create_branch:
            raise PublishError(f"{repo_id} does not exist yet, so it has no branch {branch!r}; publish to main first "
                               "or pass --create-branch")
        current = set()
        if exists and branch in branches:
            current = set(api.list_repo_files(repo_id, repo_type="dataset", revision=branch))
        new = {f.path_in_repo for f in files}
        published = {c.name for c in cfgs}
        stale, foreign = [], set()
        for p in sorted(current - new):
            parts = p.split("/")
            if parts[0] not in MANAGED_DIRS or len(parts) < 2:
                continue
            one_file = parts[0] in (REPO_MANIFEST_DIR, REPO_ASSETS_DIR, REPO_RECIPE_DIR)     # <dir>/<config>.<ext>
            config = parts[1].rsplit(".", 1)[0] if one_file else parts[1]
            if config in published or prune:
                stale.append(p)
            elif config in CONFIGS:
                foreign.add(config)
        if foreign:
            raise PublishError(f"{repo_id}@{branch} also holds config(s) {', '.join(sorted(foreign))}, which this "
                               "publish would drop from the card; pass their outputs too, or --prune to delete them")
        if not exists:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if branch != "main" and (not exists or branch not in branches):
            api.create_branch(repo_id, branch=branch, repo_type="dataset", exist_ok=True)
        head = api.dataset_info(repo_id, revision=branch).sha
        ops = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.content()) for f in files]
        ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
        configs = ", ".join(c.name for c in cfgs)
        versions = sorted({f"{c.manifest.get('advgen_version')} ({c.manifest.get('git_sha') or 'no git'})"
                           for c in cfgs})
        commit = api.create_commit(
            repo_id, ops, repo_type="dataset", revision=branch, parent_commit=head,
            commit_message=f"advgen publish: {configs}",
            commit_description="Generated with advgen " + ", ".join(versions) + ". Manifests in manifests/.")
    except HfHubHTTPError as e:
        raise _hub_error(e, token, f"publishing to {repo_id}") from None
    except transport_errors as e:
        raise PublishError(f"could not reach the Hub at {api.endpoint}: {_scrub(e, token)}") from None
    url = f"{api.endpoint}/datasets/{repo_id}" + (f"/tree/{branch}" if branch != "main" else "")
    return {"url": url, "commit": commit.oid, "changed": commit.oid != head, "deleted": stale,
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = parser("advgen publish", description="Publish generated outputs as one multi-config dataset repo on the "
                                            "Hub (one commit).")
    p.add_argument("outputs", nargs="+", help="output dirs of `advgen generate` (one per config)")
    p.add_argument("--repo-id", required=True, help="dataset repo, OWNER/NAME")
    p.add_argument("--private", action="store_true",
                   help="create the repo private (refused if it exists and is public)")
    p.add_argument("--revision", help="branch to commit to (default main); it must exist unless --create-branch")
    p.add_argument("--create-branch", action="store_true", help="create --revision if the repo does not have it")
    p.add_argument("--prune", action="store_true",
                   help="delete files of configs in the repo that are not among these outputs")
    p.add_argument("--report", action="append", default=[], metavar="PATH",
                   help="verification report for the card (repeatable; OUT/verify/*.json are read automatically)")
    p.add_argument("--dry-run", action="store_true", help="check the outputs and list the files; upload nothing")
    p.add_argument("--token", help="Hub token (default: HF_TOKEN or the stored login); never printed")
    args = p.parse_args(argv)
    try:
        return _publish_main(args)
    except PublishError as e:       # scrubbed where it was made; once more, in case a library quoted the token
        raise PublishError(_scrub(e, args.token or os.environ.get("HF_TOKEN"))) from None


def _publish_main(args) -> int:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    t0 = time.perf_counter()
    try:
        validate_repo_id(args.repo_id)
    except HFValidationError as e:
        raise PublishError(f"--repo-id {args.repo_id!r} is not a valid repo id ({_scrub(e, None)})") from None
    if "/" not in args.repo_id:
        raise PublishError(f"--repo-id {args.repo_id!r}: give OWNER/NAME")
    cfgs, files = prepare(args.outputs, args.report, repo_id=args.repo_id, revision=args.revision)
    checked = time.perf_counter() - t0
    if args.dry_run:
        print(f"dry run: would publish {', '.join(c.name for c in cfgs)} to datasets/{args.repo_id}"
              f"@{args.revision or 'main'} in one commit (checked in {checked:.1f} s):")
        print_files(files)
        return 0
    token = resolve_token(args.token)
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)   # our own summary replaces its warnings
    print(f"publishing {', '.join(c.name for c in cfgs)} ({len(files)} files, "
          f"{human_size(sum(f.size for f in files))}) to datasets/{args.repo_id}@{args.revision or 'main'}")
    res = publish(cfgs, files, args.repo_id, token, private=args.private, revision=args.revision,
                  create_branch=args.create_branch, prune=args.prune)
    for p in res["deleted"]:
        print(f"  deleted {p}")
    state = "new commit" if res["changed"] else "no changes, nothing committed; head"
    print(f"{res['url']}\n{state} {res['commit']}\n"
          f"done in {time.perf_counter() - t0:.1f} s (checks {checked:.1f} s, Hub {res['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run("publish", main))

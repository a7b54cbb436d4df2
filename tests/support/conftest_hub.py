"""Pytest plugin: a local Hub (``tests/support/hubserver.py``) for the real ``huggingface_hub`` / ``datasets`` clients.

``huggingface_hub`` and ``datasets`` read ``HF_ENDPOINT``, ``HF_HOME``, ``HF_HUB_DISABLE_XET``, ``HF_HUB_OFFLINE``...
once, *when they are imported*. This module therefore configures the environment as a side effect of being
imported, and must be imported before anything imports ``huggingface_hub`` or ``datasets`` (including ``advgen``).
Wire it in the project's ``tests/conftest.py``, as its first statement::

    pytest_plugins = ["tests.support.conftest_hub"]

pytest imports the plugin right after executing ``tests/conftest.py`` and before any test module, so this is enough
as long as ``tests/conftest.py`` itself does not import ``huggingface_hub``/``datasets``/``advgen`` at module level.
If it must, import the plugin explicitly before those imports (``register_assert_rewrite`` only avoids a harmless
``PytestAssertRewriteWarning``)::

    import pytest
    pytest.register_assert_rewrite("tests.support.conftest_hub")
    import tests.support.conftest_hub  # noqa: E402,F401  -- first: sets HF_ENDPOINT & co.
    pytest_plugins = ["tests.support.conftest_hub"]
    import advgen  # noqa: E402  -- only after the lines above

Both need the repository root on ``sys.path``: run ``python -m pytest`` from the root, or add
``pythonpath = ["."]`` to ``[tool.pytest.ini_options]`` (plain ``pytest`` otherwise fails with "No module named
'tests'"). Without a conftest, ``python -m pytest -p tests.support.conftest_hub ...`` does the same (registering the plugin
both ways is harmless).
If ``huggingface_hub`` was imported earlier with another endpoint, importing this module raises an error instead of
letting tests talk to the real Hub.

Fixtures:

* ``hub_server`` (session): a started :class:`~tests.support.hubserver.HubServer` on ``HF_ENDPOINT``. Attributes:
  ``url``, ``token`` (valid write token), ``read_token``, ``other_token``, ``user``,
  ``commits(repo_id, repo_type="dataset", revision="main")`` (shas, oldest first), ``files(repo_id, ...)``
  (``{path: bytes}``), ``requests_log`` (``(method, path, headers)`` tuples, lowercase header names, ``.status``),
  ``requests_matching(regex)``, ``clear_log()``, ``create_repo(...)``.
  The server lives for the whole session: use a fresh repo name per test (see ``hub_repo_id``).
* ``hub_repo_id`` (function): a unique, not-yet-created repo id ``test-user/<test-name>-<n>``.
* ``hub_api`` (function): ``huggingface_hub.HfApi`` bound to the server with the valid token.

The environment set at import: ``HF_ENDPOINT=http://127.0.0.1:<free port>``, ``HF_HUB_DISABLE_XET=1``,
``HF_HUB_DISABLE_TELEMETRY=1``, ``HF_HUB_DISABLE_PROGRESS_BARS=1``, ``HF_HOME``/``HF_DATASETS_CACHE``/
``HF_HUB_CACHE``/``HF_XET_CACHE`` inside a fresh temp dir; ``HF_HUB_OFFLINE``, ``HF_DATASETS_OFFLINE``,
``TRANSFORMERS_OFFLINE``, ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN`` and other cache overrides are unset (so no real
token can leak to the test server and caches never mix with the user's), and ``127.0.0.1`` is added to ``NO_PROXY``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import socket
import sys
import tempfile

import pytest

from tests.support.hubserver import HubServer

_UNSET = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_STORED_TOKENS_PATH",
    "HUGGINGFACE_HUB_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HF_ASSETS_CACHE",
    "TRANSFORMERS_CACHE",
    "HUGGINGFACE_CO_STAGING",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
    "HF_DATASETS_MANUAL_DOWNLOADS",
    "HF_MODULES_CACHE",
)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configure_hub_environment() -> tuple[int, str]:
    """Pick a free port and point the HF libraries at it (idempotent). Returns ``(port, hf_home)``."""
    # Once per process (the module may be imported under two names); a child process (e.g. a pytest-xdist
    # worker) that imports it again gets its own port and HF_HOME.
    if os.environ.get("_ADVGEN_TEST_HUB_PID") == str(os.getpid()):
        return int(os.environ["_ADVGEN_TEST_HUB_PORT"]), os.environ["HF_HOME"]
    port = _free_loopback_port()
    home = tempfile.mkdtemp(prefix="advgen-test-hf-home-")
    atexit.register(shutil.rmtree, home, True)
    for name in _UNSET:
        os.environ.pop(name, None)
    os.environ.update(
        {
            "_ADVGEN_TEST_HUB_PID": str(os.getpid()),
            "_ADVGEN_TEST_HUB_PORT": str(port),
            "HF_ENDPOINT": f"http://127.0.0.1:{port}",
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HOME": home,
            "HF_HUB_CACHE": os.path.join(home, "hub"),
            "HF_XET_CACHE": os.path.join(home, "xet"),
            "HF_DATASETS_CACHE": os.path.join(home, "datasets"),
        }
    )
    no_proxy = [p for p in os.environ.get("NO_PROXY", os.environ.get("no_proxy", "")).split(",") if p]
    for host in ("127.0.0.1", "localhost"):
        if host not in no_proxy:
            no_proxy.append(host)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = ",".join(no_proxy)
    return port, home


def _check_not_imported_too_early() -> None:
    expected = os.environ["HF_ENDPOINT"]
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None and getattr(hub_constants, "ENDPOINT", expected) != expected:
        raise RuntimeError(
            "huggingface_hub was imported before tests/conftest_hub.py configured HF_ENDPOINT "
            f"(it uses {hub_constants.ENDPOINT!r}, expected {expected!r}). Import tests.conftest_hub first thing "
            "in tests/conftest.py (before anything importing huggingface_hub, datasets or advgen)."
        )
    ds_config = sys.modules.get("datasets.config")
    if ds_config is not None and getattr(ds_config, "HF_ENDPOINT", expected) != expected:
        raise RuntimeError("datasets was imported before tests/conftest_hub.py configured HF_ENDPOINT.")


HUB_PORT, HF_HOME = configure_hub_environment()
_check_not_imported_too_early()


@pytest.fixture(scope="session")
def hub_server():
    """The local Hub, serving on ``HF_ENDPOINT`` for the whole test session."""
    server = HubServer(port=HUB_PORT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


_repo_counter = itertools.count()


@pytest.fixture
def hub_repo_id(request, hub_server) -> str:
    """A unique repo id (not created) in the test user's namespace."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:60] or "repo"
    return f"{hub_server.user}/{name}-{next(_repo_counter)}"


@pytest.fixture
def hub_api(hub_server):
    """``HfApi`` bound to the local Hub with the valid write token."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_server.url, token=hub_server.token)

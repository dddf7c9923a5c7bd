"""Test setup: offline Hub, a private HF cache, and the real clips in ../shared/media/.

Where ``CI=true`` (as `.ci/run` runs), a test that needs ../shared/media or torchcodec fails instead of being
skipped: CI has both, so a skip there means a broken setup, not a machine without them.
"""

import functools
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

os.environ["HF_HUB_OFFLINE"] = "1"
_OWN_HF_HOME = None if "HF_HOME" in os.environ else tempfile.mkdtemp(prefix="emovid-hf-home-")
if _OWN_HF_HOME:
    os.environ["HF_HOME"] = _OWN_HF_HOME
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402


def unavailable(reason: str) -> None:
    """Skip the test for lack of ``reason``'s requirement; under CI=true, fail it instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: CI must have it, so this test fails instead of being skipped)")
    pytest.skip(reason)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the HF cache made for this run (subprocesses of the tests share it through the environment)."""
    if _OWN_HF_HOME:
        shutil.rmtree(_OWN_HF_HOME, ignore_errors=True)


SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@pytest.fixture
def shared_media() -> Path:
    """The folder of real third-party clips; the test is skipped when it is absent (fails under CI=true)."""
    if not (SHARED_MEDIA / "big_buck_bunny_480p_30s.mp4").exists():
        unavailable("../shared/media is not present")
    return SHARED_MEDIA


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny tensors run fastest single-threaded on shared cores; restores torch's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def torchcodec_decoding() -> None:
    """Skip (fail under CI=true) unless torchcodec and the FFmpeg libraries it loads are present (`datasets`' decoding)."""
    from emovid_datasets.torch.decoding import require_torchcodec

    try:
        require_torchcodec()
    except ImportError as exc:
        unavailable(str(exc).splitlines()[0][:200])


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray instance with 2 CPUs, one (fake) GPU and a custom ``fake_gpu`` resource, for engine tests."""
    ray = pytest.importorskip("ray")
    # Ray's workers import the stages' functions by module name, as pytest imports the test modules.
    path = os.pathsep.join([str(Path(__file__).parent), str(Path(__file__).parents[1])])
    ray.init(num_cpus=2, num_gpus=1, resources={"fake_gpu": 2}, include_dashboard=False,
             _temp_dir=str(tmp_path_factory.mktemp("ray")), logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files; records each request's line, Cookie and Proxy-Authorization on the server's ``seen``.

    A request for an absolute URL (what a client sends to a proxy) is served from the same folder, so the
    server is also a forward proxy for any host.
    """

    def send_head(self):
        self.server.seen.append((self.requestline, self.headers.get("Cookie"), self.headers.get("Proxy-Authorization")))
        return super().send_head()

    def translate_path(self, path):
        return super().translate_path(urlsplit(path).path)

    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass


@pytest.fixture
def media_server(tmp_path):
    """A loopback HTTP server serving tmp_path/served at http://127.0.0.1:PORT/ (and the requests it saw)."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", server.seen
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()

import functools
import http.server
import shutil
import threading

import pytest

from crossfuse.data import registry as reg
from crossfuse.errors import DataError
from tests.conftest import data_mirror, requires_data


@pytest.fixture
def loopback_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving a copy of part of the shared mirror."""
    served = tmp_path / "served"
    (served / "usps").mkdir(parents=True)
    shutil.copy(data_mirror() / "usps" / "usps.h5", served / "usps" / "usps.h5")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@requires_data
def test_missing_file_is_downloaded_over_loopback_and_verified(loopback_server, tmp_path, monkeypatch):
    _, url = loopback_server
    root = tmp_path / "root"
    monkeypatch.setenv("CROSSFUSE_DATA", str(root))
    monkeypatch.setenv("CROSSFUSE_MIRROR_URL", url)
    path = reg.fetch("usps", "usps.h5")
    assert path == root / "usps" / "usps.h5"
    assert reg.sha256_of(path) == reg.registry("usps")["usps.h5"].sha256
    assert reg.verify_dataset("usps") == []


@requires_data
def test_download_with_wrong_checksum_is_refused(loopback_server, tmp_path, monkeypatch):
    served, url = loopback_server
    (served / "usps" / "usps.h5").write_bytes(b"not the registered file")
    root = tmp_path / "root"
    monkeypatch.setenv("CROSSFUSE_DATA", str(root))
    monkeypatch.setenv("CROSSFUSE_MIRROR_URL", url)
    with pytest.raises(DataError, match="refused"):
        reg.fetch("usps", "usps.h5")
    assert not (root / "usps" / "usps.h5").exists()


def test_present_file_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSFUSE_DATA", str(tmp_path))
    (tmp_path / "usps").mkdir()
    (tmp_path / "usps" / "usps.h5").write_bytes(b"corrupt")
    with pytest.raises(DataError, match=r"usps\.h5: sha256 mismatch"):
        reg.fetch("usps", "usps.h5")
    assert reg.verify_dataset("usps") == [f"{tmp_path / 'usps' / 'usps.h5'}: sha256 mismatch"]


def test_unreachable_source_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSFUSE_DATA", str(tmp_path))
    monkeypatch.setenv("CROSSFUSE_MIRROR_URL", "http://127.0.0.1:9")
    with pytest.raises(DataError, match="cannot download"):
        reg.fetch("usps", "usps.h5")


def test_unregistered_file_and_unknown_dataset_are_refused():
    with pytest.raises(DataError, match="not a registered file"):
        reg.fetch("usps", "other.h5")
    with pytest.raises(DataError, match="unknown dataset"):
        reg.registry("imagenet")


def test_registry_covers_every_fsdd_recording():
    files = reg.registry("fsdd")
    assert len(files) == 3000
    assert all(len(entry.sha256) == 64 for entry in files.values())
    assert files["recordings/0_george_0.wav"].url.endswith("/recordings/0_george_0.wav")

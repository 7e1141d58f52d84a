"""fetch_url against a real loopback HTTP server: checksum, skip, retries, errors."""

from __future__ import annotations

import hashlib

import pytest
from httpserver import MediaServer

from soundsup.fetch import ChecksumError, FetchError, fetch_url

PAYLOAD = bytes(range(256)) * 400
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    (root / "cut.bin").write_bytes(PAYLOAD)
    behaviours = {"cut.bin": ("truncate", 1000), "gone.bin": ("status", 404), "mute.bin": ("silent", 20)}
    with MediaServer(root, behaviours) as running:
        yield running


def requests_for(server, name):
    return [entry for entry in server.requests if entry[1] == f"/{name}"]


def test_fetch_with_checksum_then_skip(server, tmp_path):
    destination = tmp_path / "out" / "data.bin"
    assert fetch_url(server.url("data.bin"), destination, sha256=DIGEST) == destination
    assert destination.read_bytes() == PAYLOAD
    assert fetch_url(server.url("data.bin"), destination, sha256=DIGEST.upper()) == destination
    assert len(requests_for(server, "data.bin")) == 1  # the second call requested nothing
    destination.write_bytes(b"stale")
    fetch_url(server.url("data.bin"), destination, sha256=DIGEST)
    assert destination.read_bytes() == PAYLOAD and len(requests_for(server, "data.bin")) == 2


def test_checksum_mismatch_names_url_expected_and_got(server, tmp_path):
    destination = tmp_path / "out" / "data.bin"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as caught:
        fetch_url(server.url("data.bin"), destination, sha256=wrong)
    message = str(caught.value)
    assert server.url("data.bin") in message and wrong in message and DIGEST in message
    assert list((tmp_path / "out").iterdir()) == []  # neither the file nor a temporary one


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(FetchError, match=r"gone\.bin.*404"):
        fetch_url(server.url("gone.bin"), tmp_path / "gone.bin", retries=3, backoff_s=0.01)
    assert len(requests_for(server, "gone.bin")) == 1


def test_truncated_body_is_retried_then_reported(server, tmp_path):
    with pytest.raises(FetchError, match=r"cut\.bin.*incomplete body, 1000 of 102400 bytes"):
        fetch_url(server.url("cut.bin"), tmp_path / "cut.bin", retries=2, backoff_s=0.01)
    assert len(requests_for(server, "cut.bin")) == 3
    assert not (tmp_path / "cut.bin").exists()


def test_server_that_never_answers_times_out(server, tmp_path):
    with pytest.raises(FetchError, match=r"mute\.bin.*timed out"):
        fetch_url(server.url("mute.bin"), tmp_path / "mute.bin", timeout_s=0.5, retries=1, backoff_s=0.01)
    assert len(requests_for(server, "mute.bin")) == 2


def test_the_fetch_file_adapter_fetches_the_url_of_its_params(server, tmp_path):
    from adapter_helpers import Job, run_adapter

    def job(sha256):
        return Job(
            input=Job(),
            output=[str(tmp_path / "resources" / "data.bin")],
            params=Job(url=server.url("data.bin"), sha256=sha256),
            wildcards=Job(),
            log=[str(tmp_path / "fetch.log")],
            rule="fetch_file",
            threads=1,
        )

    run_adapter("fetch_file", job(DIGEST))
    assert (tmp_path / "resources" / "data.bin").read_bytes() == PAYLOAD
    (tmp_path / "resources" / "data.bin").unlink()
    with pytest.raises(ChecksumError):
        run_adapter("fetch_file", job("0" * 64))
    assert not (tmp_path / "resources" / "data.bin").exists()  # nothing unverified under the final name

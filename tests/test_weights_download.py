"""Fetching a release: checksum, resumed transfers, refusals. A local HTTP server stands in
for the publishers; no test reaches the internet."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import re
import tarfile
import threading

import numpy as np
import pytest
from click.testing import CliRunner

import weights_formats as wf
from dam_cnn_tf.weights import (
    ChecksumError,
    DownloadError,
    Release,
    download_file_set,
    download_weights,
    read_converted,
)
from dam_cnn_tf.weights import download as download_module
from dam_cnn_tf.cli import main
from cli_helpers import invoke
from tfjs_files import write_manifest


class Server:
    """Serves ``files`` (name -> bytes); ``drop_after`` cuts the first response to a file after
    that many bytes (headers promise the whole file); ``errors`` are HTTP statuses answered to
    the first requests; ``Range`` is honoured unless ``ignore_range``."""

    def __init__(self, files, drop_after=None, errors=(), ignore_range=False):
        self.files, self.drop_after, self.requests = files, drop_after, []
        self.errors, self.ignore_range = list(errors), ignore_range
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append((name, self.headers.get("Range")))
                if server.errors:
                    self.send_error(server.errors.pop(0))
                    return
                if name not in server.files:
                    self.send_error(404)
                    return
                body, start = server.files[name], 0
                ranged = None if server.ignore_range else self.headers.get("Range")
                if ranged:
                    start = int(ranged.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if server.drop_after is not None and len(server.requests) == 1:
                    self.wfile.write(body[start : start + server.drop_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/releases"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "rcmalli_vggface_tf_vgg16.h5"
    params = wf.keras_params(np.random.default_rng(0), 32)
    wf.write_keras_vggface(path, params)
    return path.read_bytes(), params


def _release(sha256=None, **kwargs):
    fields = dict(name="tiny", url="https://example.invalid/v2.0/rcmalli_vggface_tf_vgg16.h5",
                  format="keras-vggface", licence="test", sha256=sha256)
    fields.update(kwargs)
    return Release(**fields)


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def test_download_verifies_and_converts(tmp_path, keras_file):
    data, params = keras_file
    with Server({"rcmalli_vggface_tf_vgg16.h5": data}) as server:
        result = download_weights(_release(_sha(data)), tmp_path, base_url=server.base, echo=lambda m: None)
    assert result.pinned and result.sha256 == _sha(data)
    assert result.path.read_bytes() == data
    weights, attrs = read_converted(result.converted)
    assert attrs["source_sha256"] == _sha(data) and attrs["source_format"] == "keras-vggface"
    np.testing.assert_array_equal(weights["conv3_1"][0], params["conv3_1"][0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rcmalli_vggface_tf_vgg16.h5", "tiny.weights.h5"]


def test_broken_transfer_is_resumed(tmp_path, keras_file):
    data, _ = keras_file
    cut = len(data) // 3
    with Server({"rcmalli_vggface_tf_vgg16.h5": data}, drop_after=cut) as server:
        result = download_weights(_release(_sha(data)), tmp_path, base_url=server.base, backoff=0.01,
                                  convert=False, echo=lambda m: None)
        requests = server.requests
    assert result.path.read_bytes() == data
    # The first request was cut; the second asked only for the rest.
    assert requests[0] == ("rcmalli_vggface_tf_vgg16.h5", None)
    assert requests[1] == ("rcmalli_vggface_tf_vgg16.h5", f"bytes={cut}-")
    assert not (tmp_path / "rcmalli_vggface_tf_vgg16.h5.part").exists()


def test_checksum_mismatch_deletes_the_file(tmp_path, keras_file):
    data, _ = keras_file
    with Server({"rcmalli_vggface_tf_vgg16.h5": data}) as server:
        with pytest.raises(ChecksumError, match="does not match the expected 0{64}; file deleted") as raised:
            download_weights(_release("0" * 64), tmp_path, base_url=server.base, echo=lambda m: None)
    assert "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


def test_unpinned_release_records_then_checks_the_hash(tmp_path, keras_file):
    data, _ = keras_file
    messages = []
    with Server({"rcmalli_vggface_tf_vgg16.h5": data}) as server:
        first = download_weights(_release(), tmp_path, base_url=server.base, convert=False, echo=messages.append)
    assert not first.pinned and _sha(data) in messages[0] and "--sha256" in messages[0]
    record = tmp_path / "rcmalli_vggface_tf_vgg16.h5.sha256"
    assert record.read_text().split()[0] == _sha(data)
    # A file changed afterwards no longer matches the recorded hash and is refused.
    (tmp_path / "rcmalli_vggface_tf_vgg16.h5").write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    with pytest.raises(ChecksumError, match="recorded in"):
        download_weights(_release(), tmp_path, convert=False, echo=messages.append)
    assert not (tmp_path / "rcmalli_vggface_tf_vgg16.h5").exists()


def test_archive_member_is_extracted_and_converted(tmp_path):
    params = wf.hwio_params(np.random.default_rng(1), 32)
    mat = tmp_path / "vgg_face.mat"
    wf.write_matconvnet(mat, params)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(mat, arcname="vgg_face_matconvnet/data/vgg_face.mat")
    archive = buffer.getvalue()
    release = _release(_sha(archive), name="oxford", format="matconvnet",
                       url="https://example.invalid/src/vgg_face_matconvnet.tar.gz",
                       member="vgg_face_matconvnet/data/vgg_face.mat")
    cache = tmp_path / "cache"
    with Server({"vgg_face_matconvnet.tar.gz": archive}) as server:
        result = download_weights(release, cache, base_url=server.base, echo=lambda m: None)
    assert result.path == cache / "vgg_face.mat" and result.path.read_bytes() == mat.read_bytes()
    weights, _ = read_converted(result.converted)
    np.testing.assert_array_equal(weights["conv1_1"][0], params["conv1_1"][0][:, :, ::-1, :])


def test_unreachable_and_missing_files_fail_cleanly(tmp_path, keras_file):
    data, _ = keras_file
    with Server({}) as server:
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_weights(_release(), tmp_path, base_url=server.base, echo=lambda m: None)
        dead = server.base
    with pytest.raises(DownloadError, match="failed after 2 attempts"):
        download_weights(_release(), tmp_path, url=dead + "/x.h5", retries=1, backoff=0.01, timeout=2,
                         echo=lambda m: None)


def test_registry_and_base_url_override(monkeypatch):
    releases = download_module.RELEASES
    assert releases["vgg_face_caffe"].url.startswith("https://www.robots.ox.ac.uk/~vgg/software/vgg_face/src/")
    assert releases["keras_vggface_vgg16"].url.endswith("/v2.0/rcmalli_vggface_tf_vgg16.h5")
    assert all(r.sha256 is None or len(r.sha256) == 64 for r in releases.values())
    monkeypatch.setenv(download_module.BASE_URL_ENV, "http://127.0.0.1:9/mirror/")
    assert download_module.resolve_url(releases["deepface_vgg_face"]) == "http://127.0.0.1:9/mirror/vgg_face_weights.h5"
    assert download_module.resolve_url(releases["deepface_vgg_face"], url="http://h/f.h5") == "http://h/f.h5"


def test_cli_download(tmp_path, keras_file):
    data, _ = keras_file
    runner = CliRunner()
    with Server({"rcmalli_vggface_tf_vgg16.h5": data}) as server:
        ok = runner.invoke(main, ["weights", "download", "keras_vggface_vgg16", "--cache-dir", str(tmp_path),
                                  "--base-url", server.base, "--sha256", _sha(data)])
        bad = runner.invoke(main, ["weights", "download", "keras_vggface_vgg16", "--cache-dir", str(tmp_path / "b"),
                                   "--base-url", server.base, "--sha256", "f" * 64])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "keras_vggface_vgg16.weights.h5").is_file()
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert bad.output.strip().splitlines()[-1].startswith("Error: ") and "file deleted" in bad.output


KERAS_FILE = "rcmalli_vggface_tf_vgg16.h5"


def _cli_download(server, cache, data, *extra, source="keras_vggface_vgg16", expect_ok=True):
    """``damcnn-tf weights download`` through the top-level group, as a user runs it."""
    return invoke("weights", "download", source, "--cache-dir", cache, "--base-url", server.base,
                  "--sha256", _sha(data), *extra, expect_ok=expect_ok)


def test_cli_download_retries_after_a_server_error(tmp_path, keras_file):
    data, _ = keras_file
    with Server({KERAS_FILE: data}, errors=[503]) as server:
        _cli_download(server, tmp_path, data)
        requests = server.requests
    assert requests == [(KERAS_FILE, None), (KERAS_FILE, None)]  # the 503, then the file
    assert (tmp_path / KERAS_FILE).read_bytes() == data


def test_cli_download_starts_over_when_the_server_ignores_range(tmp_path, keras_file):
    data, _ = keras_file
    cut = len(data) // 3
    (tmp_path / f"{KERAS_FILE}.part").write_bytes(b"\0" * cut)  # a part the server will not continue
    with Server({KERAS_FILE: data}, ignore_range=True) as server:
        _cli_download(server, tmp_path, data)
        requests = server.requests
    assert requests == [(KERAS_FILE, f"bytes={cut}-")]  # answered 200 with the whole file
    assert (tmp_path / KERAS_FILE).read_bytes() == data


def test_cli_download_of_a_complete_part_takes_the_416_as_done(tmp_path, keras_file):
    data, _ = keras_file
    (tmp_path / f"{KERAS_FILE}.part").write_bytes(data)
    with Server({KERAS_FILE: data}) as server:
        _cli_download(server, tmp_path, data)
        requests = server.requests
    assert requests == [(KERAS_FILE, f"bytes={len(data)}-")]  # answered 416: nothing left to send
    assert (tmp_path / KERAS_FILE).read_bytes() == data and (tmp_path / "keras_vggface_vgg16.weights.h5").is_file()


def test_cli_download_checks_the_published_md5(tmp_path, monkeypatch):
    model = tmp_path / "VGG_FACE.caffemodel"
    wf.write_caffemodel(model, wf.oihw_params(np.random.default_rng(3), 32), size=32)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(model, arcname="vgg_face_caffe/VGG_FACE.caffemodel")
    archive = buffer.getvalue()
    files = {"vgg_face_caffe.tar.gz": archive}
    with Server(files) as server:
        # Its SHA-256 is the one given, but its MD5 is not the one Oxford's archive has.
        bad = _cli_download(server, tmp_path / "a", archive, source="vgg_face_caffe", expect_ok=False)
        published = download_module.RELEASES["vgg_face_caffe"]
        monkeypatch.setitem(download_module.RELEASES, "vgg_face_caffe",
                            dataclasses.replace(published, md5=hashlib.md5(archive).hexdigest()))
        _cli_download(server, tmp_path / "b", archive, source="vgg_face_caffe")
    lines = bad.output.strip().splitlines()
    assert bad.exit_code != 0 and lines[-1].startswith("Error: ") and "Traceback" not in bad.output
    assert "MD5" in lines[-1] and published.md5 in lines[-1] and "file deleted" in lines[-1]
    assert not list((tmp_path / "a").glob("vgg_face_caffe.tar.gz*"))
    assert (tmp_path / "b" / "vgg_face_caffe.weights.h5").is_file()


FACE_API_MANIFEST = "face_recognition_model-weights_manifest.json"


@pytest.fixture
def face_api_files(tmp_path, monkeypatch):
    """A small TF.js manifest and its .bin under face-api's names, and face-resnet's download
    patched to their checksums: ``{name: bytes}``."""
    rng = np.random.default_rng(2)
    folder = write_manifest(tmp_path / "published", {"a/conv/filters": rng.normal(size=(3, 3, 3, 4)),
                                                     "fc": rng.normal(size=(4, 2))},
                            stem="face_recognition_model").parent
    files = {path.name: path.read_bytes() for path in folder.iterdir()}
    published = download_module.FILE_SETS["face-resnet"]
    patched = tuple(dataclasses.replace(f, sha256=_sha(files[f.filename])) for f in published.files)
    monkeypatch.setitem(download_module.FILE_SETS, "face-resnet", dataclasses.replace(published, files=patched))
    return files


def test_face_resnet_download_fetches_both_files_resuming(tmp_path, face_api_files):
    cut = len(face_api_files["face_recognition_model.bin"]) // 2
    with Server(face_api_files, drop_after=cut) as server:
        manifest = download_file_set("face-resnet", tmp_path / "weights", base_url=server.base, backoff=0.01)
        requests = server.requests
    assert manifest == tmp_path / "weights" / FACE_API_MANIFEST
    assert {p.name: p.read_bytes() for p in manifest.parent.iterdir()} == face_api_files
    # The shard first (cut, then resumed), the manifest last.
    assert requests == [("face_recognition_model.bin", None), ("face_recognition_model.bin", f"bytes={cut}-"),
                        (FACE_API_MANIFEST, None)]
    # Verified files already there are not fetched again.
    assert download_file_set("face-resnet", tmp_path / "weights", base_url="http://127.0.0.1:9/gone") == manifest


def test_face_resnet_download_needs_both_files(tmp_path, face_api_files):
    only_manifest = {FACE_API_MANIFEST: face_api_files[FACE_API_MANIFEST]}
    with Server(only_manifest) as server:
        with pytest.raises(DownloadError, match=r"face_recognition_model\.bin: HTTP 404"):
            download_file_set("face-resnet", tmp_path / "weights", base_url=server.base)
    # No manifest pointing at a missing shard is left behind.
    assert list((tmp_path / "weights").iterdir()) == []


def test_face_resnet_checksum_mismatch_deletes_the_file(tmp_path, face_api_files):
    tampered = dict(face_api_files)
    tampered["face_recognition_model.bin"] = b"\xff" + tampered["face_recognition_model.bin"][1:]
    with Server(tampered) as server:
        with pytest.raises(ChecksumError, match="face_recognition_model.bin: SHA-256 .* file deleted") as raised:
            download_file_set("face-resnet", tmp_path / "weights", base_url=server.base)
    assert "\n" not in str(raised.value)
    assert list((tmp_path / "weights").iterdir()) == []


def test_face_resnet_download_is_pinned_to_face_api_on_github():
    file_set = download_module.FILE_SETS["face-resnet"]
    assert [f.filename for f in file_set.files] == ["face_recognition_model.bin", FACE_API_MANIFEST]
    assert file_set.entry == FACE_API_MANIFEST
    for published in file_set.files:
        assert published.url == ("https://raw.githubusercontent.com/vladmandic/face-api/"
                                 f"{download_module.FACE_API_COMMIT}/model/{published.filename}")
        assert re.fullmatch("[0-9a-f]{64}", published.sha256)
    assert len(download_module.FACE_API_COMMIT) == 40


def test_cli_download_face_resnet(tmp_path, face_api_files):
    runner = CliRunner()
    with Server(face_api_files) as server:
        ok = runner.invoke(main, ["weights", "download", "face-resnet", "--cache-dir", str(tmp_path / "weights"),
                                  "--base-url", server.base])
    assert ok.exit_code == 0, ok.output
    manifest = tmp_path / "weights" / FACE_API_MANIFEST
    assert manifest.read_bytes() == face_api_files[FACE_API_MANIFEST]
    assert f"build_face_resnet(weights={str(manifest)!r})" in ok.output and "public domain" in ok.output
    refused = runner.invoke(main, ["weights", "download", "face-resnet", "--sha256", "0" * 64])
    assert refused.exit_code == 2 and "--sha256: not for face-resnet" in refused.output


@pytest.mark.realdata
def test_face_resnet_download_of_the_published_files_builds_the_backbone(tmp_path):
    """The real files, served from 127.0.0.1, pass the pinned checksums and load as they are."""
    from conftest import shared_data_dir
    from dam_cnn_tf.backbones.face_resnet.model import build_face_resnet

    published = shared_data_dir().parent / "weights" / "face-api"
    names = [f.filename for f in download_module.FILE_SETS["face-resnet"].files]
    if not all((published / name).is_file() for name in names):
        pytest.skip(f"face-api weights not present at {published}")
    with Server({name: (published / name).read_bytes() for name in names}) as server:
        manifest = download_file_set("face-resnet", tmp_path, base_url=server.base)
    model = build_face_resnet(weights=manifest)
    assert model.count_params() == 5_614_592
    reference = build_face_resnet(weights=published / FACE_API_MANIFEST)
    np.testing.assert_array_equal(model.get_layer("fc").get_weights()[0], reference.get_layer("fc").get_weights()[0])

"""Fetch a published VGG-Face release, verify it, and convert it for our backbone; or fetch
face-api's face-recognition files, which ``face-resnet`` reads as they are.

Dependency-free: ``urllib`` streams into ``<file>.part``; a broken transfer is resumed with an
HTTP ``Range`` request and retried with exponential backoff; the SHA-256 is checked before the
file is used, and a mismatch deletes it. Where the registry has no verified SHA-256
(``sha256=None``), the first download records the hash beside the file and prints it, and later
uses are checked against that record; pass ``sha256=`` (``--sha256``) to pin a known value.

The base address of every release can be replaced (``base_url=`` or the environment variable
``DAMCNN_WEIGHTS_BASE_URL``), for mirrors and for tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import shutil
import socket
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from dam_cnn_tf.checksums import sha256_of
from dam_cnn_tf.weights.convert import convert_weights
from dam_cnn_tf.weights.errors import ChecksumError, DownloadError, WeightsError

BASE_URL_ENV = "DAMCNN_WEIGHTS_BASE_URL"
CACHE_DIR_ENV = "DAMCNN_WEIGHTS_CACHE"
CHUNK = 1 << 20
OXFORD_LICENCE = (
    "Oxford VGG release (Parkhi, Vedaldi & Zisserman, BMVC 2015): read the licence shipped in the archive "
    "and on https://www.robots.ox.ac.uk/~vgg/software/vgg_face/ before use; downstream projects treat it "
    "as not for commercial use"
)
DERIVED_LICENCE = "a conversion of the Oxford VGG-Face release, whose licence terms it inherits"
# vladmandic/face-api's commit "1.7.15" (the npm release whose model/ folder these files are);
# its face_recognition_model files have not changed since 2021.
FACE_API_COMMIT = "f587b44f66eae5a8fbd74f593171882378c14ddc"
FACE_API_MODEL_URL = f"https://raw.githubusercontent.com/vladmandic/face-api/{FACE_API_COMMIT}/model"
FACE_API_LICENCE = (
    "dlib's face-recognition ResNet (Davis King; released into the public domain) in face-api's "
    "TensorFlow.js form (MIT, https://github.com/vladmandic/face-api)"
)


@dataclasses.dataclass(frozen=True)
class Release:
    """One published file: where it is, what it should hash to, and how to read it."""

    name: str
    url: str
    format: str
    licence: str
    sha256: str | None = None
    md5: str | None = None  # an extra check where only an MD5 is published
    member: str | None = None  # path of the weights inside a .tar.gz archive

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


RELEASES = {
    r.name: r
    for r in (
        Release(
            "vgg_face_matconvnet",
            "https://www.robots.ox.ac.uk/~vgg/software/vgg_face/src/vgg_face_matconvnet.tar.gz",
            "matconvnet",
            OXFORD_LICENCE,
            member="vgg_face_matconvnet/data/vgg_face.mat",
        ),
        Release(
            "vgg_face_caffe",
            "https://www.robots.ox.ac.uk/~vgg/software/vgg_face/src/vgg_face_caffe.tar.gz",
            "caffe",
            OXFORD_LICENCE,
            # As published by bob.bio.face, which fetches the same archive.
            md5="ee707ac6e890bc148cb155adeaad12be",
            member="vgg_face_caffe/VGG_FACE.caffemodel",
        ),
        Release(
            "keras_vggface_vgg16",
            "https://github.com/rcmalli/keras-vggface/releases/download/v2.0/rcmalli_vggface_tf_vgg16.h5",
            "keras-vggface",
            "keras-vggface (MIT code); " + DERIVED_LICENCE,
        ),
        Release(
            "keras_vggface_vgg16_notop",
            "https://github.com/rcmalli/keras-vggface/releases/download/v2.0/rcmalli_vggface_tf_notop_vgg16.h5",
            "keras-vggface",
            "keras-vggface (MIT code); " + DERIVED_LICENCE,
        ),
        Release(
            "deepface_vgg_face",
            "https://github.com/serengil/deepface_models/releases/download/v1.0/vgg_face_weights.h5",
            "deepface",
            "deepface (MIT code); " + DERIVED_LICENCE,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class FileSet:
    """Files that are used together, as published; ``entry`` is the one a user points at."""

    name: str
    files: tuple[Release, ...]  # fetched in this order: the entry last, so it appears only when complete
    entry: str
    licence: str


def _face_api_file(filename: str, sha256: str) -> Release:
    return Release(filename, f"{FACE_API_MODEL_URL}/{filename}", "tfjs", FACE_API_LICENCE, sha256=sha256)


FILE_SETS = {
    s.name: s
    for s in (
        FileSet(
            "face-resnet",
            (
                _face_api_file("face_recognition_model.bin",
                               "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589"),
                _face_api_file("face_recognition_model-weights_manifest.json",
                               "cbaffa501b0b9275a12b63357a6843e7e30c054e1c9151e1a5f879b26e32986b"),
            ),
            entry="face_recognition_model-weights_manifest.json",
            licence=FACE_API_LICENCE,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class DownloadResult:
    path: Path  # the verified download (the extracted member for archives)
    sha256: str  # of the downloaded file
    pinned: bool  # False when the hash was recorded on first use rather than checked
    converted: Path | None


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "dam_cnn_tf" / "weights")


def resolve_url(release: Release, url: str | None = None, base_url: str | None = None) -> str:
    """The address to fetch: an explicit ``url``, else the file under ``base_url`` (or the
    environment's), else the registry's own."""
    if url:
        return url
    base = base_url or os.environ.get(BASE_URL_ENV)
    return f"{base.rstrip('/')}/{release.filename}" if base else release.url


def _total_size(response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) + offset if length and length.isdigit() else None


def fetch(
    url: str,
    part: Path,
    *,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Stream ``url`` into ``part``, resuming what is already there; returns ``part``."""
    part.parent.mkdir(parents=True, exist_ok=True)
    last_error = "no attempt made"
    for attempt in range(retries + 1):
        if attempt:
            sleep(backoff * 2 ** (attempt - 1))
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": "dam-cnn-tf"})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if offset and response.status != 206:  # the server ignored Range: start over
                    offset = 0
                total = _total_size(response, offset)
                with open(part, "ab" if offset else "wb") as handle:
                    shutil.copyfileobj(response, handle, CHUNK)
            size = part.stat().st_size
            if total is None or size == total:
                return part
            last_error = f"transfer ended at {size} of {total} bytes"
        except urllib.error.HTTPError as error:
            if error.code == 416 and offset:  # nothing left to send: the part is complete
                return part
            if 400 <= error.code < 500:
                raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from None
            last_error = f"HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, ConnectionError, OSError) as error:
            last_error = str(getattr(error, "reason", None) or error)
    raise DownloadError(f"{url}: failed after {retries + 1} attempts ({last_error}); run again to resume")


def _verify(path: Path, release: Release, expected: str | None, record: Path) -> tuple[str, bool]:
    """Check ``path`` against the expected SHA-256, or a hash recorded by an earlier download.

    Returns ``(sha256, pinned)``. A mismatch deletes ``path`` and raises ``ChecksumError``.
    """
    actual = sha256_of(path)
    expected = (expected or release.sha256 or "").lower() or None
    source = "expected"
    if expected is None and record.is_file():
        expected, source = record.read_text().split()[0].lower(), f"recorded in {record.name}"
    if expected is not None and actual != expected:
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{path}: SHA-256 {actual} does not match the {source} {expected}; file deleted")
    if release.md5:
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                digest.update(block)
        if digest.hexdigest() != release.md5:
            path.unlink(missing_ok=True)
            raise ChecksumError(
                f"{path}: MD5 {digest.hexdigest()} does not match the published {release.md5}; file deleted"
            )
    return actual, expected is not None and source == "expected"


def _extract(archive: Path, member: str, dest: Path) -> Path:
    """Stream one member out of a .tar.gz through a temporary name."""
    tmp = dest.with_name(dest.name + ".part")
    try:
        with tarfile.open(archive, "r:*") as tar:
            try:
                source = tar.extractfile(member)
            except KeyError:
                source = None
            if source is None:
                raise WeightsError(f"{archive}: no file {member} in the archive")
            with source, open(tmp, "wb") as handle:
                shutil.copyfileobj(source, handle, CHUNK)
        os.replace(tmp, dest)
    except tarfile.TarError as error:
        raise WeightsError(f"{archive}: not a readable archive ({error})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _fetch_verified(release: Release, cache: Path, address: str, sha256: str | None, **fetch_options):
    """``cache/<filename>``, fetched from ``address`` unless already there, and verified.

    The transfer goes to ``<filename>.part`` (resumed if present) and is renamed only once its
    checksum holds. Returns ``(path, sha256, pinned)``.
    """
    target = cache / release.filename
    record = cache / (release.filename + ".sha256")
    if not target.is_file():
        part = fetch(address, cache / (release.filename + ".part"), **fetch_options)
        try:
            digest, pinned = _verify(part, release, sha256, record)
        except ChecksumError as error:
            raise ChecksumError(str(error).replace(str(part), address)) from None
        os.replace(part, target)
    else:
        digest, pinned = _verify(target, release, sha256, record)
    return target, digest, pinned


def download_weights(
    source: str | Release,
    cache_dir=None,
    *,
    sha256: str | None = None,
    url: str | None = None,
    base_url: str | None = None,
    convert_to=None,
    convert: bool = True,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    echo: Callable[[str], None] = print,
) -> DownloadResult:
    """Fetch, verify and (by default) convert one release; returns where everything is.

    ``source`` is a registry name (see ``RELEASES``) or a ``Release``. The converted weights go
    to ``convert_to`` or ``<cache_dir>/<name>.weights.h5``.
    """
    if isinstance(source, str):
        if source not in RELEASES:
            raise WeightsError(f"unknown release {source!r}; choose one of {', '.join(RELEASES)}")
        release = RELEASES[source]
    else:
        release = source
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    target, digest, pinned = _fetch_verified(release, cache, resolve_url(release, url, base_url), sha256,
                                             retries=retries, backoff=backoff, timeout=timeout)
    record = cache / (release.filename + ".sha256")
    if not pinned and not record.is_file():
        record.write_text(f"{digest}  {release.filename}\n")
        echo(f"{release.filename}: SHA-256 {digest} (not pinned; recorded in {record}; pass --sha256 to pin it)")
    path = target
    if release.member:
        path = cache / Path(release.member).name
        if not path.is_file():
            _extract(target, release.member, path)
    converted = None
    if convert:
        converted = convert_weights(path, convert_to or cache / f"{release.name}.weights.h5", release.format)
    return DownloadResult(path=path, sha256=digest, pinned=pinned, converted=converted)


def download_file_set(
    name: str,
    target_dir=None,
    *,
    base_url: str | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> Path:
    """Fetch every file of the set ``name`` (see ``FILE_SETS``) into ``target_dir`` (default: the
    weights cache), each checked against its pinned SHA-256; returns the path of its entry file.

    ``face-resnet`` gives face-api's ``face_recognition_model-weights_manifest.json`` with its
    ``.bin`` beside it, which ``build_face_resnet(weights=...)`` and ``--backbone-weights`` read
    as they are.
    """
    if name not in FILE_SETS:
        raise WeightsError(f"unknown download {name!r}; choose one of {', '.join(FILE_SETS)}")
    file_set = FILE_SETS[name]
    folder = Path(target_dir) if target_dir else default_cache_dir()
    for release in file_set.files:
        _fetch_verified(release, folder, resolve_url(release, None, base_url), None,
                        retries=retries, backoff=backoff, timeout=timeout)
    return folder / file_set.entry


def downloaded(name: str, cache_dir=None) -> Path | None:
    """The entry file of file set ``name`` (or a release's converted file) where
    ``damcnn-tf weights download NAME`` left it in the cache, else None; nothing is fetched."""
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    if name in FILE_SETS:
        entry = folder / FILE_SETS[name].entry
        complete = all((folder / release.filename).is_file() for release in FILE_SETS[name].files)
        return entry if complete else None
    converted = folder / f"{name}.weights.h5"
    return converted if name in RELEASES and converted.is_file() else None

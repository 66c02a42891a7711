import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Prepared faces of the tests go to a throw-away folder, not the user's cache.
os.environ.setdefault("DAMCNN_CACHE", tempfile.mkdtemp(prefix="damcnn-test-cache-"))

from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout, or ``$DAMCNN_SHARED_DATA``."""
    env = os.environ.get("DAMCNN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(1234)
    yield
    keras.backend.clear_session()


@pytest.fixture
def shared_data():
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f"real face data not present at {root}")
    return root

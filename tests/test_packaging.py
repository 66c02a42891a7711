"""Every file the package reads at run time ships in the wheel: setup.cfg's package data
covers every non-Python file under dam_cnn_tf/ (a recipe or a preset's light file left out
would work from a clone and fail after pip install)."""

import configparser
import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dam_cnn_tf"


def package_data() -> dict:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    section = config["options.package_data"]
    return {name: [p.strip() for p in value.replace("\n", ",").split(",") if p.strip()]
            for name, value in section.items()}


def shipped(path: Path, data: dict) -> bool:
    for package, patterns in data.items():
        folder = ROOT.joinpath(*package.split("."))
        try:
            relative = path.relative_to(folder).as_posix()
        except ValueError:
            continue
        if any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns):
            return True
    return False


def test_every_data_file_of_the_package_is_package_data():
    data = package_data()
    files = [p for p in PACKAGE.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
             and "__pycache__" not in p.parts]
    assert files, "the package holds data files (recipes, presets)"
    missing = [str(p.relative_to(ROOT)) for p in files if not shipped(p, data)]
    assert not missing, f"not in setup.cfg's package data: {missing}"

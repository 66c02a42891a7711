"""The package's structure: imports run one way, from the paper's layers up to the commands,
and the names of earlier releases still import."""

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dam_cnn_tf"
# Lowest first: a module may import from its own rank and the ranks below it, never above.
RANKS = [
    {"errors", "hparams", "tf_log", "runtime", "optimizers", "serving_ops", "input_range", "checksums", "quantization"},
    {"layers", "viz"},
    {"weights"},
    {"backbones"},
    {"data"},
    {"models"},
    {"recipes"},
    {"training"},
    {"evaluation"},
    {"paper"},
    {"presets", "export", "export_formats", "predict", "predict_models", "face_analysis", "detection"},
    {"commands", "cli"},
]
RANK = {unit: i for i, units in enumerate(RANKS) for unit in units}


def unit_of(module: str) -> str:
    return module.split(".")[1]


def is_moved_name(tree: ast.Module) -> bool:
    """A module kept so that an earlier release's import path still works (``sys.modules`` alias
    or re-exports of a moved module): it points up to the new place by design."""
    doc = ast.get_docstring(tree) or ""
    return doc.startswith("Moved")


def imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if is_moved_name(tree):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dam_cnn_tf."):
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dam_cnn_tf."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args \
                and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("dam_cnn_tf."):
            yield node.args[0].value, node.lineno


def test_every_top_level_module_has_a_rank():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    assert units <= set(RANK), f"give these a rank: {sorted(units - set(RANK))}"


def test_imports_run_one_way():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = relative.parts if relative.name != "__init__" else relative.parts[:-1]
        if len(parts) < 2:
            continue  # dam_cnn_tf/__init__.py: the lazy public API, which may name anything
        source = parts[1]
        for module, line in imports(path):
            target = unit_of(module)
            if target in RANK and RANK[target] > RANK[source]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("old, name", [
    ("dam_cnn_tf.training.config", "TrainConfig"),
    ("dam_cnn_tf.training.config", "resolve_config"),
    ("dam_cnn_tf.training.budget", "stage_budget"),
    ("dam_cnn_tf.training.budget", "learning_rate"),
    ("dam_cnn_tf.training.evaluation", "classification_report"),
    ("dam_cnn_tf.training.reports", "write_evaluation"),
    ("dam_cnn_tf.training.baselines", "probe_fold"),
    ("dam_cnn_tf.training.crossval", "run_crossval"),
    ("dam_cnn_tf.training.experiments", "run_experiment"),
    ("dam_cnn_tf.training.stages", "train_dam_cnn"),
    ("dam_cnn_tf.training.stages", "FaceSet"),
    ("dam_cnn_tf.models.face_resnet", "build_face_resnet"),
    ("dam_cnn_tf.models.vgg_face", "build_vgg_face"),
    ("dam_cnn_tf.models.vgg_face", "build_compact_backbone"),
    ("dam_cnn_tf.models.backbones", "build_backbone"),
    ("dam_cnn_tf.weights.face_resnet", "load_face_resnet_weights"),
    ("dam_cnn_tf.weights.cli", "weights"),
])
def test_the_import_paths_of_the_last_release_still_work(old, name):
    assert getattr(importlib.import_module(old), name) is not None

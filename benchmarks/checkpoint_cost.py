"""What a validation round of stage 2 writes, and how long it takes (docs/performance.md).

At the end of every round stage 2 writes a resumable backup (weights and both optimizers'
moments, ``AtomicBackupAndRestore``) and, when the round improved, a best checkpoint (weights
alone, ``AtomicModelCheckpoint``). This times both callbacks' own writes on an MPVS-Net of the
given size, after one training step so that both optimizers hold their moments:

    python benchmarks/checkpoint_cost.py --json checkpoint-cost.json   # N = 3, 4096 -> 1024, as in docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def measure(input_dim: int, encoder_units: int, num_paths: int, fc_units: int, classes: int, tries: int) -> dict:
    import keras

    from dam_cnn_tf.models.mpvs_net import MPVSNet
    from dam_cnn_tf.training.callbacks import AtomicBackupAndRestore, AtomicModelCheckpoint

    net = MPVSNet(input_dim, classes, encoder_units=encoder_units, num_paths=num_paths, fc_units=fc_units)
    net.compile(optimizer=keras.optimizers.Adam(3e-4), mpae_optimizer=keras.optimizers.Adam(3e-4))
    rng = np.random.default_rng(0)
    features = rng.random((32, input_dim), dtype=np.float32)
    targets = rng.random((32, num_paths, input_dim), dtype=np.float32)
    net.fit(features, (rng.integers(0, classes, 32), targets), batch_size=32, epochs=1, verbose=0)
    with tempfile.TemporaryDirectory(prefix="checkpoint-cost-") as tmp:
        backup = AtomicBackupAndRestore(Path(tmp) / "backup")
        best = AtomicModelCheckpoint(Path(tmp) / "best.weights.npz", monitor="val_cross_entropy", mode="min")
        for callback in (backup, best):
            callback.set_model(net)
            callback.on_train_begin()  # as fit would: an empty folder, nothing to restore
        backup_seconds, best_seconds = [], []
        for epoch in range(tries):  # each round's end as fit calls it, a better score each time
            logs = {"val_cross_entropy": 1.0 / (epoch + 1)}
            start = time.perf_counter()
            best.on_epoch_end(epoch, logs)
            best_seconds.append(time.perf_counter() - start)
            start = time.perf_counter()
            backup.on_epoch_end(epoch, logs)
            backup_seconds.append(time.perf_counter() - start)
        backup_bytes = sum(p.stat().st_size for p in (Path(tmp) / "backup").glob("*.weights.h5"))
        best_bytes = (Path(tmp) / "best.weights.npz").stat().st_size
    return {"weights": int(net.count_params()), "backup_bytes": backup_bytes, "backup_seconds": backup_seconds,
            "best_bytes": best_bytes, "best_seconds": best_seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dim", type=int, default=4096, help="salient features (face-resnet: 4x4x256)")
    parser.add_argument("--encoder-units", type=int, default=1024)
    parser.add_argument("--num-paths", type=int, default=3)
    parser.add_argument("--fc-units", type=int, default=512)
    parser.add_argument("--classes", type=int, default=7)
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    figures = measure(args.input_dim, args.encoder_units, args.num_paths, args.fc_units, args.classes, args.tries)
    print(f"backup: {figures['backup_bytes'] / 1e6:.1f} MB, "
          + ", ".join(f"{s:.2f}" for s in figures["backup_seconds"]) + " s; "
          f"best checkpoint: {figures['best_bytes'] / 1e6:.1f} MB, "
          + ", ".join(f"{s:.2f}" for s in figures["best_seconds"]) + " s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

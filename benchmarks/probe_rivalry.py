"""The probe's state against fine-tuning, fold by fold, on the validation faces alone.

Reads the runs of ``damcnn-tf experiment select`` (``OUT/candidates/<key>/fold-XX``) or of a
cross-validation (``OUT/fold-XX``) and prints, for each run: the probe's validation loss and
accuracy at its kept round, fine-tuning's best round by validation loss and its accuracy
there, and which of the two stage 1 kept. Competing changes only which weights are kept, not
how either phase trains, so the two columns are also what the probe alone (``--stage1-steps
0``) and fine-tuning without the rivalry (``--no-probe-competes``) end with:

    python benchmarks/probe_rivalry.py results/ck48-select [--json rivalry.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _best(metrics: list) -> dict:
    return min(metrics, key=lambda row: row["val_loss"]) if metrics else {}


def run_rivalry(run: Path) -> dict:
    """The probe's and fine-tuning's best validation rounds of one run, and what was kept."""
    probe = json.loads((run / "stage1" / "probe" / "metrics.json").read_text())
    tuned = json.loads((run / "stage1" / "metrics.json").read_text())
    state = json.loads((run / "state.json").read_text())["info"].get("stage1", {})
    p, t = _best(probe), _best(tuned)
    return {"run": str(run), "probe_val_loss": p.get("val_loss"), "probe_val_accuracy": p.get("val_accuracy"),
            "fine_tuned_val_loss": t.get("val_loss"), "fine_tuned_val_accuracy": t.get("val_accuracy"),
            "fine_tuned_round": None if not t else t["epoch"] + 1, "kept": state.get("kept")}


def runs_under(out: Path) -> list:
    """The runs under ``out`` whose stage 1 is complete (a run still training is left out)."""
    runs = sorted(p.parent.parent.parent for p in out.rglob("fold-*/stage1/probe/metrics.json"))
    return [run for run in runs if (run / "stage1" / "vgg_serd.weights.h5").exists()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = [run_rivalry(run) for run in runs_under(args.out)]
    print("| run | probe val. loss | probe val. acc. (%) | fine-tuned val. loss (round) | fine-tuned val. acc. (%) | kept |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        name = str(Path(r["run"]).relative_to(args.out))
        print(f"| {name} | {r['probe_val_loss']:.3f} | {100 * r['probe_val_accuracy']:.1f} | "
              f"{r['fine_tuned_val_loss']:.3f} ({r['fine_tuned_round']}) | {100 * r['fine_tuned_val_accuracy']:.1f} "
              f"| {r['kept']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

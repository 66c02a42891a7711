"""The suite's results as a plain-text table."""

from __future__ import annotations

GIB = 1 << 30


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _verdict(section: dict) -> str:
    met = section.get("met")
    return "n/a" if met is None else ("met" if met else "NOT met")


def _rows(name: str, section: dict):
    if "error" in section:
        yield (name, "", "failed", section["error"], "", "", "")
        return
    target = section.get("target")
    goal = f">= {target}x" if target else ""
    if name == "inference":
        yield ("1 exported inference", "images/s", _fmt(section["exported_images_per_s"]),
               f"VGG16 body {_fmt(section['vgg16_body_images_per_s'])}", _fmt(section["ratio"]), goal,
               _verdict(section))
        formats = section.get("formats", {})
        saved = formats.get("saved_model", {}).get("images_per_s")
        for fmt, value in formats.items():
            if fmt == "saved_model":
                continue
            if "error" in value:
                yield (f"1 exported {fmt}", "images/s", "not run", value["error"], "", "", "")
            else:
                yield (f"1 exported {fmt}", "images/s", _fmt(value["images_per_s"]), f"SavedModel {_fmt(saved)}",
                       _fmt(value["images_per_s"] / saved if saved else None), "", "")
    elif name == "stage1":
        yield ("2 stage-1 step", "images/s", _fmt(section["stage1_images_per_s"]),
               f"VGG16+FC {_fmt(section['vgg16_fc_images_per_s'])}", _fmt(section["ratio"]), goal, _verdict(section))
    elif name == "stage2":
        for variant, v in section["variants"].items():
            if "skipped" in v:
                yield (f"3 stage-2 step [{variant}]", "samples/s", "not run", v["skipped"], "", "", "")
                continue
            faults = v.get("step_minor_faults")
            kernel = (f"; kernel {_fmt(v['step_system_s'])} s, {faults / 1e3:,.0f}k faults"
                      if faults is not None else "")
            yield (f"3 stage-2 step [{variant}]", "samples/s", _fmt(v["samples_per_s"]),
                   f"{_fmt(v['achieved_gflops'], 1)} of {_fmt(v['matmul_gflops'], 1)} GFLOP/s "
                   f"{v['matmul_dtype']} matmul"
                   f"; update {_fmt(v['update_s'])} of {_fmt(v['step_s'])} s{kernel}",
                   _fmt(v["ratio"]), ">= 0.6x", _verdict(v))
    elif name == "decoders":
        t = section["timings"]
        if "layer_forward" in t:
            ours, other, label = "layer", "one_product", "one stacked product"
        else:  # results from before the decoders were separate variables
            ours, other, label = "batched", "separate", "separate products"
        yield (f"3b decoders, {'N products' if ours == 'layer' else 'one stacked product'}", "ms fwd / fwd+bwd",
               f"{t[ours + '_forward']['median_s'] * 1e3:.1f} / {t[ours + '_forward_backward']['median_s'] * 1e3:.1f}",
               f"{label} {t[other + '_forward']['median_s'] * 1e3:.1f} / "
               f"{t[other + '_forward_backward']['median_s'] * 1e3:.1f}",
               f"{_fmt(section['forward_speedup'])} / {_fmt(section['forward_backward_speedup'])}", "", "")
    elif name == "pipeline":
        yield ("4 pair pipeline", "samples/s",
               f"{_fmt(section['in_memory_samples_per_s'], 0)} mem / {_fmt(section['memmap_samples_per_s'], 0)} mmap",
               f"stage 2 uses {_fmt(section['stage2_consumes_samples_per_s'])}", _fmt(section["ratio"], 1), goal,
               _verdict(section))
    elif name == "extraction":
        yield ("5 feature extraction", "images/s", _fmt(section["extraction_images_per_s"]),
               f"backbone fwd {_fmt(section['backbone_images_per_s'])}", _fmt(section["ratio"]), "", "")
    elif name == "face_resnet":
        inference, stage1 = section["inference"], section["stage1"]
        yield ("7 face-resnet exported inference", "images/s", _fmt(inference["exported_images_per_s"]),
               f"same Keras model {_fmt(inference['keras_images_per_s'])}", _fmt(inference["ratio"]), ">= 0.9x",
               _verdict(inference))
        yield ("7 face-resnet stage-1 step", "images/s", _fmt(stage1["stage1_images_per_s"]),
               f"plain net + FC {_fmt(stage1['plain_fc_images_per_s'])}; step {_fmt(section['stage1_step_s'], 3)} s",
               _fmt(stage1["ratio"]), "", "")
    elif name == "memory":
        for probe, result in section["probes"].items():
            peak = result.get("peak_bytes")
            expected = result.get("expected", {}).get("training_bytes")
            detail = result.get("error") or (f"weights+Adam+grads {expected / GIB:.2f} GiB" if expected else "")
            goal = "< 12 GiB" if probe == f"stage2_n{section['largest_num_paths']}" else ""
            yield (f"6 peak RSS [{probe}]", "GiB", _fmt(peak / GIB if peak else None), detail, "",
                   goal, _verdict(section) if goal else "")


def format_table(payload: dict) -> str:
    header = ("section", "unit", "measured", "baseline / detail", "ratio", "target", "verdict")
    rows = [row for name, section in payload["sections"].items() for row in _rows(name, section)]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    machine = payload.get("machine", {})
    flags = " ".join(machine.get("cpu_flags") or []) or "?"
    onednn = " under oneDNN" if machine.get("onednn") else ""
    out = [f"config {payload['config']['name']} on {machine.get('cpu', '?')} x{machine.get('cpu_count', '?')} "
           f"({flags}), allocator {machine.get('allocator', '?')}{onednn}, TF {machine.get('tensorflow', '?')}, "
           f"{payload['total_seconds']:.0f} s",
           line(header), line(tuple("-" * w for w in widths))]
    out += [line(r) for r in rows]
    return "\n".join(out)


def format_markdown(payload: dict) -> str:
    """The same table in Markdown, for docs/performance.md."""
    header = ("section", "unit", "measured", "baseline / detail", "ratio", "target", "verdict")
    rows = [row for name, section in payload["sections"].items() for row in _rows(name, section)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    import json
    import sys

    print(format_markdown(json.loads(open(sys.argv[1]).read())))

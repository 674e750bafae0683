"""Ratios and targets, the stdout table, and the PNG chart."""

from __future__ import annotations

import statistics
from pathlib import Path

RATIO_LEVEL = 4  # throughput is compared at this concurrency (or the nearest one measured)


def _level(runs: list[dict], concurrency: int) -> dict:
    return min(runs, key=lambda r: (abs(r["concurrency"] - concurrency), r["concurrency"]))


def add_ratios(results: dict) -> None:
    """Fill `ratios` and `targets` of every model from its measurements."""
    for family, m in results["models"].items():
        ours, torch_ = m["ours"]["levels"], m["pytorch_fastapi"]["levels"]
        ours_c1, torch_c1 = _level(ours, 1), _level(torch_, 1)
        ours_c4, torch_c4 = _level(ours, RATIO_LEVEL), _level(torch_, RATIO_LEVEL)
        limit = m["bare"]["p50_ms"]
        cold_ours = statistics.median(m["ours"]["cold_starts_s"])
        cold_torch = statistics.median(m["pytorch_fastapi"]["cold_starts_s"])
        m["ratios"] = {
            "ours_over_limit_p50_c1": ours_c1["p50_ms"] / limit,
            "pytorch_over_limit_p50_c1": torch_c1["p50_ms"] / limit,
            "ours_over_pytorch_throughput_c4": ours_c4["throughput_rps"]
            / max(torch_c4["throughput_rps"], 1e-9),
            "pytorch_over_ours_cpu_per_request_c4": torch_c4["cpu_ms_per_request"]
            / max(ours_c4["cpu_ms_per_request"], 1e-9),
            "throughput_concurrency": ours_c4["concurrency"],
            "pytorch_over_ours_p50_c1": torch_c1["p50_ms"] / ours_c1["p50_ms"],
            "cold_start_median_s": {"ours": cold_ours, "pytorch_fastapi": cold_torch},
            "peak_rss_mb": {
                "ours": m["ours"]["rss_peak_mb"],
                "pytorch_fastapi": m["pytorch_fastapi"]["rss_peak_mb"],
            },
        }
        r = m["ratios"]
        targets = {
            "p50_c1_within_1.15x_limit": (r["ours_over_limit_p50_c1"], "<=", 1.15),
            "throughput_c4_at_least_2x_pytorch": (r["ours_over_pytorch_throughput_c4"], ">=", 2.0),
            "cold_start_under_2s": (cold_ours, "<", 2.0),
        }
        if family == "yolov7-tiny":
            targets["peak_rss_under_300mb"] = (m["ours"]["rss_peak_mb"], "<", 300.0)
        m["targets"] = {
            name: {"value": value, "target": f"{op} {bound:g}", "met": _holds(value, op, bound)}
            for name, (value, op, bound) in targets.items()
        }


def _holds(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound}[op]


def _row(name: str, run: dict) -> str:
    return (
        f"  {name:<22}{run['concurrency']:>4}{run['throughput_rps']:>9.2f}"
        f"{run.get('p50_ms', float('nan')):>9.1f}{run.get('p95_ms', float('nan')):>9.1f}"
        f"{run.get('p99_ms', float('nan')):>9.1f}{run['cpu_cores_busy']:>7.2f}"
        f"{run.get('cpu_ms_per_request', float('nan')):>9.0f}"
        f"{run['rss_peak_mb']:>8.0f}{run['requests']:>7}{run['errors']:>5}"
    )


def table(results: dict) -> str:
    mach = results["machine"]
    lines = [
        f"machine: {mach['cpu_model']} ({' '.join(mach.get('cpu_flags', []))}), "
        f"{mach['cpus_available']} CPUs available "
        f"({mach['logical_cpus']} logical), {mach['memory_gb']} GB; onnxruntime "
        f"{mach['onnxruntime']}, torch {mach['torch']}; load average at start "
        f"{mach['load_average_at_start'][0]:.2f}",
        f"images: {', '.join(results['settings']['images'])}; "
        f"{results['settings']['duration_s']:g} s per load level",
    ]
    head = (
        f"  {'':<22}{'c':>4}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'cores':>7}{'CPUms/rq':>9}{'RSS MB':>8}{'reqs':>7}{'err':>5}"
    )
    for family, m in results["models"].items():
        size, bare, pipe = m["size"], m["bare"], m["pipeline"]
        lines += [
            "",
            f"{family} @ {m['img_size']}: {size['params_m']:.2f} M params "
            f"(official {size.get('official_params_m', '?')}), {size['gflops']:.1f} GFLOPs at 640 "
            f"(official {size.get('official_gflops', '?')})",
            f"  bare session.run (limit): p50 {bare['p50_ms']:.1f} ms, p95 {bare['p95_ms']:.1f} "
            f"ms ({bare['runs']} runs, {bare['intra_op_threads']} threads); serve pipeline "
            f"in-process: p50 {pipe['p50_ms']:.1f} ms",
            head,
        ]
        lines += [_row("ours (HTTP)", run) for run in m["ours"]["levels"]]
        lines += [_row("pytorch+fastapi", run) for run in m["pytorch_fastapi"]["levels"]]
        for name, v in m.get("variants", {}).get("servers", {}).items():
            lines += [_row(f"ours {name}", run) for run in v["levels"]]
        stages = m["ours"]["levels"][0].get("server_stages_ms", {})
        if stages:
            c1 = m["ours"]["levels"][0]
            inside = sum(stages.values())
            parts = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
            lines.append(
                f"  ours c={c1['concurrency']} mean ms inside the server: {parts}; HTTP, framework "
                f"and client {c1['mean_ms'] - inside:.1f} (mean latency {c1['mean_ms']:.1f})"
            )
        prof = m.get("profile", {})
        if prof.get("share"):
            shares = ", ".join(f"{k} {v:.0%}" for k, v in prof["share"].items())
            lines.append(f"  py-spy, our server at c=1 ({prof['samples']} samples): {shares}")
        elif prof.get("error"):
            lines.append(f"  py-spy: {prof['error']}")
        variants = m.get("variants")
        if variants:
            levels = ", ".join(
                f"{b['level']} {b['p50_ms']:.1f}" for b in variants["optimization_levels_bare"]
            )
            threads = ", ".join(
                f"{b['intra_op_threads']} thr {b['p50_ms']:.1f}" for b in variants["threads_bare"]
            )
            together = ", ".join(
                f"{b['threads']}x{b['intra_op_threads']} thr {b['runs_per_s']:.2f}/s"
                for b in variants.get("concurrent_runs_bare", [])
            )
            lines += [
                f"  bare p50 ms by graph optimisation level: {levels}",
                f"  bare runs/s, N runs at once x intra-op threads (one session): {together}",
                f"  bare p50 ms by intra-op threads: {threads}; "
                f"INT8 {variants['int8_bare']['p50_ms']:.1f}; "
                f"end2end {variants['end2end_bare']['p50_ms']:.1f}",
            ]
        r = m["ratios"]
        cold = r["cold_start_median_s"]
        lines += [
            f"  cold start (median, process start -> /ping 200): ours "
            f"{cold['ours']:.2f} s, pytorch+fastapi {cold['pytorch_fastapi']:.2f} s",
            f"  ratios: ours/limit p50 c=1 {r['ours_over_limit_p50_c1']:.3f}x; "
            f"ours/pytorch throughput c={r['throughput_concurrency']} "
            f"{r['ours_over_pytorch_throughput_c4']:.2f}x; pytorch/ours p50 c=1 "
            f"{r['pytorch_over_ours_p50_c1']:.2f}x; pytorch/ours CPU time per request "
            f"c={r['throughput_concurrency']} {r['pytorch_over_ours_cpu_per_request_c4']:.2f}x",
        ]
        for name, t in m["targets"].items():
            lines.append(
                f"  target {name:<36} {t['value']:>8.3f} {t['target']:<8} "
                f"{'MET' if t['met'] else 'MISSED'}"
            )
    acc = results.get("int8_accuracy")
    if acc:
        fp, q = acc["fp32"], acc["int8"]
        lines += [
            "",
            f"INT8 dynamic quantization, {acc['model']} at {acc['img_size']} on {acc['images']} "
            f"synthetic images: precision {fp['precision']:.3f} -> {q['precision']:.3f}, recall "
            f"{fp['recall']:.3f} -> {q['recall']:.3f}; file {acc['file_mb']['fp32']:.1f} -> "
            f"{acc['file_mb']['int8']:.1f} MB",
        ]
    return "\n".join(lines)


def chart(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(results["models"])
    fig, axes = plt.subplots(len(families), 3, figsize=(16, 4 * len(families)), squeeze=False)
    for row, family in zip(axes, families, strict=True):
        m = results["models"][family]
        series = {"ours": m["ours"]["levels"], "pytorch+fastapi": m["pytorch_fastapi"]["levels"]}
        for name, v in m.get("variants", {}).get("servers", {}).items():
            series[f"ours {name}"] = v["levels"]
        for name, runs in series.items():
            xs = [r["concurrency"] for r in runs]
            style = "-o" if name in ("ours", "pytorch+fastapi") else ":."
            row[0].plot(xs, [r["throughput_rps"] for r in runs], style, label=name)
            row[1].plot(xs, [r.get("p50_ms", float("nan")) for r in runs], style, label=name)
            cpu = [r.get("cpu_ms_per_request", float("nan")) for r in runs]
            row[2].plot(xs, cpu, style, label=name)
        limit = m["bare"]["p50_ms"]
        row[0].axhline(1000 / limit, color="grey", ls="--", label="1 / bare p50")
        row[1].axhline(limit, color="grey", ls="--", label="bare session.run p50")
        row[0].set(title=f"{family}: throughput", xlabel="concurrency", ylabel="requests/s")
        row[1].set(title=f"{family}: p50 latency", xlabel="concurrency", ylabel="ms")
        row[2].set(
            title=f"{family}: server CPU time per request (the cost)",
            xlabel="concurrency",
            ylabel="CPU ms",
        )
        ticks = sorted({r["concurrency"] for runs in series.values() for r in runs})
        for ax in row:
            ax.set_xscale("log", base=2)
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    mach = results["machine"]
    fig.suptitle(f"{mach['cpu_model']}, {mach['cpus_available']} CPUs", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

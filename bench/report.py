"""Ratios and targets, the stdout table, and the PNG chart."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench import decoding
from bench.goals import PUBLISHED

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
        f"  {name:<26}{run['concurrency']:>4}{run['throughput_rps']:>9.2f}"
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
        f"{mach['onnxruntime']}, openvino {mach.get('openvino') or 'not installed'}, torch "
        f"{mach['torch']}; load average at start "
        f"{mach['load_average_at_start'][0]:.2f}",
        f"images: {', '.join(results['settings']['images'])}; "
        f"{results['settings']['duration_s']:g} s per load level",
    ]
    if results.get("decoding"):
        lines.append(decoding.summary(results["decoding"]))
    head = (
        f"  {'':<26}{'c':>4}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
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
        for name, v in m["configs"].items():
            if name != "ours":
                lines += [_row(f"ours {name}", run) for run in v["levels"]]
        peers = m.get("bare_peers", {})
        if peers:
            lines.append(
                f"  bare peers, p50 ms (same windows as the limit's {bare['p50_ms']:.1f}): "
                + ", ".join(
                    f"{name} {b['p50_ms']:.1f} ({b['p50_ms'] / bare['p50_ms']:.2f}x)"
                    for name, b in peers.items()
                )
            )
        rect = m.get("bare_rect")
        if rect:
            lines.append(
                f"  bare FP32 on each photo's smallest rectangle (--rect, "
                f"{m.get('rect_pixel_share', 1.0):.2f}x the square's pixels): p50 "
                f"{rect['p50_ms']:.1f} ms ({rect['p50_ms'] / bare['p50_ms']:.2f}x the square's)"
            )
        big = m.get("big_photo")
        if big:
            lines.append(
                f"  {big['image']} ({big['megabytes']:.1f} MB, {big['size']}) at c=1, beside the "
                "~1 MP photos' p50:"
            )
            for name, c1 in big["configs"].items():
                small = m["configs"][name]["levels"][0]
                stages = ", ".join(
                    f"{k} {v:.1f}" for k, v in c1.get("server_stages_ms", {}).items()
                )
                lines.append(
                    f"    {name:<20} p50 {c1.get('p50_ms', float('nan')):7.1f} ms (1 MP "
                    f"{small.get('p50_ms', float('nan')):.1f}); inside the server: {stages}"
                )
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
            end2end = variants.get("end2end_bare")
            lines += [
                f"  bare p50 ms by graph optimisation level: {levels}",
                f"  bare runs/s, N runs at once x intra-op threads (one session): {together}",
                f"  bare p50 ms by intra-op threads: {threads}"
                + (f"; end2end {end2end['p50_ms']:.1f}" if end2end else ""),
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
    lines += _side_by_side(results)
    return "\n".join(lines)


def _side_by_side(results: dict) -> list[str]:
    """Every configuration: speed, cost and accuracy on one line; then the goals."""
    acc = results.get("accuracy", {})
    verdicts = acc.get("configurations", {})
    money = results.get("cost", {})
    lines = [
        "",
        f"accuracy: {acc.get('model')} at {acc.get('img_size')} on {acc.get('images')} synthetic "
        f"images (seed {acc.get('seed')}), each configuration against the drawn boxes (P, R) and "
        f"against onnxruntime FP32 (agreement: same class, IoU > 0.8); accurate = P and R within "
        f"0.01 of FP32 and agreement >= 0.97. INT8 export: {acc.get('int8_export', '')}",
        f"cost: {money.get('assumption', '')}",
    ]
    for family, m in results["models"].items():
        lines += [
            "",
            f"{family} @ {m['img_size']}, every configuration side by side "
            f"(bare onnxruntime FP32 p50 {m['bare']['p50_ms']:.1f} ms; cold s: median of "
            f"{len(m['ours'].get('cold_starts_s', []))} starts, each server alone):",
            f"  {'configuration':<20}{'p50 c=1':>9}{'/bare':>7}{'req/s c=4':>10}{'CPUms/rq':>9}"
            f"{'$/M img':>9}{'cold s':>7}{'eff1':>6}{'eff4':>6}{'agree':>7}{'P':>7}{'R':>7}"
            f"{'shift px':>9}  accurate",
        ]
        baselines = [(n, m[n]) for n in ("pytorch_fastapi", "pytorch_fastapi_rect") if n in m]
        for name, run in [*m["configs"].items(), *baselines]:
            c1, c4 = _level(run["levels"], 1), _level(run["levels"], RATIO_LEVEL)
            v = verdicts.get(name, {})
            accuracy = (
                f"{v['agreement']:7.3f}{v['precision']:7.3f}{v['recall']:7.3f}"
                f"{v['mean_shift_px']:9.2f}  {'yes' if v['accurate'] else 'NO'}"
                if v
                else f"{'-':>7}{'-':>7}{'-':>7}{'-':>9}  not measured"
            )
            at = "" if c4["concurrency"] == RATIO_LEVEL else f" (c={c4['concurrency']})"
            eff = run.get("efficiency")
            efficiency = f"{eff['c1']:6.0%}{eff['c4']:6.0%}" if eff else f"{'-':>6}{'-':>6}"
            lines.append(
                f"  {name:<20}{c1.get('p50_ms', float('nan')):9.1f}"
                f"{c1.get('p50_ms', float('nan')) / m['bare']['p50_ms']:7.2f}"
                f"{c4['throughput_rps']:10.2f}{c4['cpu_ms_per_request']:9.0f}"
                f"{run.get('usd_per_million', float('nan')):9.3f}"
                f"{run.get('cold_start_s', float('nan')):7.2f}{efficiency}{accuracy}{at}"
            )
        for name, run in m["configs"].items():
            settled, cold = run.get("settled_s"), run.get("cold_start_s")
            if settled is not None and cold is not None and settled > cold + 0.01:
                lines.append(
                    f"  {name}: ready (its float view answering) after {cold:.2f} s, its INT8 "
                    f"graph answering after {settled:.2f} s (medians); every other figure above "
                    f"is the INT8 graph's"
                )
        if m.get("skipped"):
            lines.append(
                "  not run here: " + "; ".join(f"{k}: {v}" for k, v in m["skipped"].items())
            )
    bound = results.get("compute_bound")
    if bound:
        lines += [
            "",
            "eff1, eff4: the compute bound (the model's GFLOPs over the CPU's peak at the "
            "configuration's precision; derived, not measured) over the p50 at c=1 and over "
            "1 / throughput at c=4; peaks: " + "; ".join(bound.values()),
        ]
    lines += ["", "goals of issue 27 (ratios from this run):"]
    for g in results.get("goals", []):
        lines.append(
            f"  {g['model']:<12} {g['goal']:<70} {g['config']:<20} {g['measured']:6.2f} "
            f"{g['target']:<6} {'MET' if g['met'] else 'MISSED'} ({g['detail']})"
        )
    if not results.get("goals"):
        lines.append("  none evaluated: no configuration was both measured and accurate")
    lines.append(f"  {PUBLISHED}")
    return lines


def chart(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(results["models"])
    fig, axes = plt.subplots(len(families), 3, figsize=(16, 4 * len(families)), squeeze=False)
    for row, family in zip(axes, families, strict=True):
        m = results["models"][family]
        series = {"ours": m["ours"]["levels"], "pytorch+fastapi": m["pytorch_fastapi"]["levels"]}
        for name, v in m["configs"].items():
            if name != "ours":
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

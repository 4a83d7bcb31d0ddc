"""One record per benchmark (script, sizes, threads) and the table row it renders from its saved numbers.

Each row says in words what its numbers measure, with the sizes read from the
saved numbers; a ratio is the median over alternated rounds with its range
(min-max over rounds) in parentheses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script and how ``python -m benchmarks`` runs it."""

    name: str
    """Row name (``--only NAME``)."""
    script: str
    """File in ``benchmarks/``; it prints its numbers as JSON (or writes them to ``--json PATH``)."""
    full: tuple[str, ...]
    """Arguments of the measured run."""
    quick: tuple[str, ...]
    """Arguments of ``--quick`` (small sizes)."""
    one_thread: bool
    """Run under one thread: the benchmark times a ratio (A against B in one process)."""
    render: Callable[[dict], tuple[str, str]]
    """Saved numbers -> (what is measured, in words; the result)."""
    json_file: bool = False
    """The script writes its JSON to ``--json PATH`` instead of printing it."""
    needs: str | None = None
    """Optional package the benchmark needs; without it the row says it was skipped."""


def _x(r, fmt=".2f"):
    """``1.23x`` for a ratio."""
    return f"{r:{fmt}}x"


def _spread(med, lo_hi, fmt=".2f", unit=""):
    """``median (min-max)``, each number followed by ``unit``."""
    return f"{med:{fmt}}{unit} ({lo_hi[0]:{fmt}}{unit}-{lo_hi[1]:{fmt}}{unit})"


def _rounds(n: int) -> str:
    return f"{n} alternated round{'s' if n != 1 else ''}"


def _threads(n: int) -> str:
    return f"{n} thread{'s' if n != 1 else ''}"


def _secs(t: float) -> str:
    """Seconds to three significant digits."""
    return f"{t:.3g} s"


def lambert(d):
    s = d["speedup"]
    rounds = len(s["speedup_wall"]["rounds"])
    what = (f"`theory.lambert_target` on {s['n']:,} bandits x {s['arms']} arms (beta {s['beta']}, positive regime) "
            f"against a per-bandit `brentq` + `lambertw` loop on {s['n_ref']:,} of them per round: per-bandit time, "
            f"{_rounds(rounds)}")
    w, c = s["speedup_wall"], s["speedup_cpu"]
    res = (f"{_spread(w['median'], (w['min'], w['max']), ',.0f', 'x')} faster in wall time, "
           f"{_spread(c['median'], (c['min'], c['max']), ',.0f', 'x')} in CPU time "
           f"({s['vectorized_us_per_bandit']['median']:.2f} us per bandit); "
           f"agreement {max(s['max_abs_diff_pi'], s['max_abs_diff_eta']):.0e}")
    if "k_sweep" in d:
        ks = d["k_sweep"]
        ratios = ", ".join(f"K={k}: {v['ns_per_element']['median']:.0f} ns ({v['ratio_to_K16']:.2f})" for k, v in ks.items())
        res += f"; cost per element at the same element count (ratio to K=16): {ratios}"
    if "huge_row" in d:
        h = d["huge_row"]
        parts = ", ".join(f"{k} {v['median_ms']:.2f} ms (worst {v['max_ms']:.1f})" for k, v in h.items()
                          if isinstance(v, dict))
        res += f"; one row of {h['arms']:,} arms, {h['blas_threads']} BLAS threads, a core taken: {parts}"
    return what, res


def lambert_negative(d):
    what = ("`theory.lambert_target` on ONE bandit of K arms in the negative regime (baseline V*_beta + 0.05), and "
            "`sims.token_mdp.sequence_level_target` on L leaves (one such row), each in a fresh process: time and "
            "peak resident memory (imports alone about 270 MiB)")
    parts = []
    for c in d["cases"]:
        name = f"K = {c['size']:,}" if c["case"] == "bandit" else f"{c['size']:,} leaves"
        parts.append(f"{name}: {_secs(c['seconds'])}, {c['peak_rss_mib']:,.0f} MiB" if c["status"] == "ok"
                     else f"{name}: {c['status']}")
    return what, "; ".join(parts)


def zoo_solver(d):
    what = (f"each objective's target solver on {d['bandits']:,} bandits x {d['arms']} arms against integrating the "
            f"flow to the same answer (`theory.flow.logit_flow` on {d['flow_bandits']} bandits, scaled), and the "
            f"generic KKT solver (`method=\"kkt\"`) against the flow; {_rounds(d['rounds'])}")
    rows = d["rows"]
    parts = []
    for route in sorted({r["route"] for r in rows}):
        sel = [r for r in rows if r["route"] == route]
        med = [r["flow_over_solver"]["median"] for r in sel]
        lo = min(r["flow_over_solver"]["range"][0] for r in sel)
        hi = max(r["flow_over_solver"]["range"][1] for r in sel)
        parts.append(f"{route} targets ({len(sel)}) {min(med):,.0f}x-{max(med):,.0f}x faster than the flow "
                     f"(rounds {lo:,.0f}x-{hi:,.0f}x)")
    kk = [r["kkt"] for r in rows if r["kkt"] is not None]
    med = [k["flow_over_kkt"]["median"] for k in kk]
    parts.append(f"the generic KKT solver ({len(kk)}) {min(med):,.0f}x-{max(med):,.0f}x")
    agree = [r["max_abs_diff"] for r in rows if r["flow_converged"] and r["objective"] != "opmd_above"]
    notes = [f"max|diff| with converged flows {max(agree):.0e}"]
    unconv = [r["objective"] for r in rows if not r["flow_converged"]]
    if unconv:
        notes.append(f"flow not converged within its budget: {', '.join(unconv)}")
    off = [r for r in rows if r["objective"] == "opmd_above"]
    if off:
        notes.append(f"`opmd_above`: the flow from mu stops at another local minimum ({off[0]['max_abs_diff']:.2f})")
    return what, "; ".join(parts) + "; " + "; ".join(notes)


def tpo(d):
    what = (f"`sims.tpo.replicate_tpo_single`, the TPO paper's single-context protocol (K = {d['num_arms']}, "
            f"B = {d['batch']}, {d['steps']} steps), {d['num_seeds']} seeds x 3 methods in one call; best of "
            f"{d['repeats']}")
    err = ", ".join(f"{m} {e:.3f}" for m, e in d["final_mean_error"].items())
    return what, f"{_secs(d['best_s'])} (goal 1 s); final mean error 1 - pi(y*): {err}"


def token_mdp(d):
    what = (f"exact token-MDP targets (`sims.token_mdp`, beta {d['beta']}): the conditional-advantage DP, the "
            f"token-level Lambert target with the mean baseline (its negative-regime states need the branch scan) "
            f"and the min baseline, the sequence-level target; best of {d['repeats']}")
    parts = [f"V={t['V']},T={t['T']} ({t['leaves']:,} leaves, {t['negative_regime_states_mean_baseline']:,} of "
             f"{t['states']:,} states negative): sequence-level {_secs(t['sequence_level_mean_baseline_s'])}, "
             f"token-level {_secs(t['token_level_mean_baseline_s'])} (mean baseline) and "
             f"{_secs(t['token_level_min_baseline_s'])} (min baseline)" for t in d["trees"]]
    return what, "; ".join(parts) + f"; peak RSS {d['peak_rss_mib']:,.0f} MiB"


def bandit_sweep(d):
    what = ("`sims.sweeps.run_lag_sweep` (figure 4) and `run_stability_sweep` (figure 5), no cache, nothing "
            "written; goal 2 minutes each")
    parts = [f"{r['preset']}: figure-4 sweep {r['lag_sweep_s']:.1f} s ({r['cells']} cells x {r['seeds']} seeds x "
             f"{r['steps']} steps, {r['seed_steps_per_s']:,} seed-steps/s), figure-5 sweep "
             f"{r['stability_sweep_s']:.1f} s ({r['stability_maps']})" for r in d["rows"]]
    return what, "; ".join(parts)


def figures(d):
    what = "`python -m figures` from a cold result cache, full and `--smoke` (goals 10 and 2 minutes)"
    full = f"full build {d['full_s']:.0f} s, " if "full_s" in d else ""
    return what, f"{full}`--smoke` {d['smoke_s']:.0f} s"


def llm(d):
    rl = d["rl_step"]
    what = (f"`{d['preset']}` model ({d['params'] / 1e6:.1f}M parameters), {_threads(d['threads'])}. Plain LM step: "
            f"an AdamW step on a dense {d['train']['batch']} x {d['train']['seq']} batch; MFU = flops_per_token x "
            f"tokens/s over the measured fp32 matmul peak ({d['peak_gflops']:.0f} GFLOP/s). RL step: the trainer's "
            f"whole step (`lag` preset, {rl['rows']} rows: sample, score, update, diagnostics; random weights, so "
            f"every completion runs to the budget) against a plain step on a dense batch of the same rows at the "
            f"model's full length, {rl['steps_per_round']} steps per round, alternated; its MFU counts the update's "
            f"FLOPs (flops_per_token x every real token) per second of the whole step, over the same peak")
    res = (f"plain step {d['train']['tok_per_s']:,.0f} tok/s, MFU {d['train']['mfu']:.2f}; sampling "
           f"{d['sample']['tok_per_s']:,.0f} tok/s; peak memory {d['peak_rss_gb']:.2f} GB. RL step: MFU "
           f"{_spread(rl['rl_mfu'], rl['rl_mfu_range'])} against {_spread(rl['plain_mfu'], rl['plain_mfu_range'])} "
           f"for the plain step on its rows; tokens/s {_spread(rl['rl_over_train'], rl['rl_over_train_range'], unit='x')} "
           f"the plain step's counting completion tokens, {_x(rl['rl_seq_over_train'])} counting prompt and "
           f"completion (goal 0.5x on completion tokens: {'met' if rl['rl_over_train'] >= 0.5 else 'not met'})")
    return what, res


def verl_losses(d):
    c, rows = d["config"], d["rows"]
    what = (f"each registered zoo loss through verl's policy-loss interface against verl's built-in of its family "
            f"(same `loss_agg_mode`), forward + backward on {c['batch']} x {c['length']} tokens, "
            f"{_threads(c['threads'])}, {_rounds(c['repeats'])}; goal 1.1x")
    med = [r["round_ratio"] for r in rows]
    worst = max(rows, key=lambda r: r["round_ratio"])
    lo, hi = min(r["round_ratio_range"][0] for r in rows), max(r["round_ratio_range"][1] for r in rows)
    read = [r["readings_ms"] for r in rows]
    return what, (f"{min(med):.2f}x-{max(med):.2f}x of the built-in (rounds {lo:.2f}x-{hi:.2f}x); highest "
                  f"`{worst['loss_mode']}` {_spread(worst['round_ratio'], worst['round_ratio_range'], unit='x')} "
                  f"against "
                  f"`{worst['builtin']}`; the readings of [`docs/diagnostics.md`](docs/diagnostics.md) add "
                  f"{min(read):.1f} to {max(read):.1f} ms per micro-batch")


def token_train(d):
    what = (f"`sims.token_train.simulate`, V={d['V']}, T={d['T']} ({d['leaves']} leaves), G={d['G']}, {d['seeds']} "
            f"seeds as one computation, {d['steps']} steps, lag {d['lag']}, Adam; targets every "
            f"{d['rows']['opmd_token_sampled_targets']['target_every']} steps where tracked")
    names = {"opmd_token_sampled": "`opmd` token level", "opmd_token_population": "population updates",
             "opmd_token_sampled_targets": "with exact targets", "awr_token_sampled_targets": "`awr` with targets"}
    return what, "; ".join(f"{names.get(k, k)} {r['seed_steps_per_s']:,.0f} seed-steps/s" for k, r in d["rows"].items())


BENCHMARKS = {b.name: b for b in (
    Benchmark("lambert", "bench_lambert.py", ("--huge-row",), ("--n", "2000", "--n-ref", "50", "--rounds", "3"), True,
              lambert),
    Benchmark("lambert_negative", "bench_lambert_negative.py", ("--huge", "--json"), ("--smoke", "--json"), False,
              lambert_negative),
    Benchmark("zoo_solver", "bench_zoo_solver.py", ("--json",),
              ("--smoke", "--json", "--objectives", "topr", "opmd", "cispo"), True, zoo_solver),
    Benchmark("tpo", "bench_tpo.py", (), ("--smoke",), False, tpo),
    Benchmark("token_mdp", "bench_token_mdp.py", (), ("--smoke",), False, token_mdp),
    Benchmark("bandit_sweep", "bench_bandit_sweep.py", ("--json",), ("--smoke", "--json"), False, bandit_sweep),
    Benchmark("figures", "bench_figures.py", (), ("--smoke",), False, figures),
    Benchmark("llm_default", "bench_llm.py", ("--preset", "default", "--threads", "1", "--repeats", "3"),
              ("--smoke", "--preset", "default", "--threads", "1"), True, llm),
    Benchmark("llm_smoke", "bench_llm.py", ("--preset", "smoke", "--threads", "1", "--repeats", "3"),
              ("--smoke", "--threads", "1"), True, llm),
    Benchmark("verl_losses", "bench_verl_losses.py", ("--threads", "1"),
              ("--threads", "1", "--batch", "8", "--length", "256", "--repeats", "3"), True, verl_losses,
              json_file=True, needs="verl"),
    Benchmark("token_train", "bench_token_train.py", (), ("--smoke",), False, token_train),
)}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(results: dict) -> str:
    """The caption and the table (markdown) of the saved ``results``, in ``BENCHMARKS`` order."""
    m, entries = results["machine"], results["benchmarks"]
    lines = ["| benchmark | what it measures | result |", "|---|---|---|"]
    for name, bench in BENCHMARKS.items():
        e = entries.get(name)
        if e is None:
            what, res = f"`{bench.script}`", "not run yet (`python -m benchmarks --table --only " + name + "`)"
        elif e["status"] != "ok":
            what, res = f"`{bench.script}`", e["status"]
        else:
            what, res = bench.render(e["result"])
            res += f" ({e['wall_s']:.0f} s, {_threads(e['threads'])})"
        lines.append(f"| `{name}` | {_cell(what)} | {_cell(res)} |")
    ran = [e for e in entries.values() if "load_avg_before" in e]
    dates = sorted(e["date"][:10] for e in ran)
    load = [e["load_avg_before"][0] for e in ran] + [e["load_avg_after"][0] for e in ran]
    quick = any(e.get("quick") for e in entries.values())
    caption = (
        f"Generated by `python -m benchmarks --table` from [`benchmarks/results.json`](benchmarks/results.json)"
        + (" with `--quick` sizes (not the benchmarks' workloads)" if quick else "")
        + f": measured {dates[0]}" + (f" to {dates[-1]}" if dates and dates[-1] != dates[0] else "")
        + f" on {m['cpu']} ({m['cores']} cores), Python {m['python']}, numpy {m['numpy']}, torch {m['torch']}"
        + (f", at commit {m['commit']}" if m.get("commit") else "") + ". "
        + f"Other work shared the machine: its 1-minute load average was {min(load):.1f} to {max(load):.1f} "
        + "around the benchmarks, so absolute times are noisy. Each ratio (A against B) is measured in one "
        + "process, alternating A and B, under one thread; it is the median over rounds with the range "
        + "(min-max over rounds) in parentheses.\n"
        if ran else "No benchmark has run yet: `python -m benchmarks --table`.\n"
    )
    return caption + "\n" + "\n".join(lines) + "\n"

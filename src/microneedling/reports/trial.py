"""Output of an in-silico trial: NetCDF, CSV tables, PNG figures and a self-contained HTML report.

``write_trial(result, DIR)`` writes, atomically (a reader sees all of it or none):

* ``trial.nc``: per-patient end points (dims arm, patient, endpoint; units in ``endpoint_units``),
  patient covariates, per-arm trajectory bands (mean, SD, n per week), rejection rates, the spec;
* ``summary.csv``: per arm and end point: n, mean, SD, 95% CI, median, 10th/90th percentile,
  responder rate with its 95% Wilson interval;
* ``comparisons.csv``: each arm vs the control: difference with 95% CI, Cohen's d, Hedges' g,
  tests (Welch t and Mann-Whitney U, or paired t and Wilcoxon for split-face) with p values;
* ``figures/distributions.png`` (end point distributions per arm) and
  ``figures/trajectories.png`` (mean with ±1 SD band and 95% CI of the mean, per arm);
* ``report.html`` (figures embedded) and ``trial.toml`` (the validated spec, arms inlined).
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.engine.variables import variable
from microneedling.io import atomic_directory, atomic_path, write_csv_atomic, write_text_atomic
from microneedling.reports.figures import new_figure
from microneedling.studies.trial.run import trajectory_variables

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.studies.trial.run import TrialResult

__all__ = ["plot_distributions", "plot_trajectories", "write_trial"]


def plot_distributions(res: TrialResult, path: Path) -> Path:
    """Histogram of each end point per arm (one panel per end point)."""

    spec = res.spec
    E = len(spec.endpoints)
    cols = min(3, E)
    rows = math.ceil(E / cols)
    fig = new_figure(4.2 * cols, 3.0 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, e in enumerate(spec.endpoints):
        ax = axes[j // cols][j % cols]
        data = [res.values[a, :, j] for a in range(len(spec.arms))]
        data = [x[np.isfinite(x)] for x in data]
        allv = np.concatenate(data) if data else np.array([])
        if allv.size == 0:
            ax.set_title(f"{e.name}\n(no values)", fontsize=8)
            continue
        lo, hi = float(allv.min()), float(allv.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        for a, x in enumerate(data):
            ax.hist(x, bins=bins, alpha=0.5, density=True, label=spec.arms[a].name)
        if e.above is not None or e.below is not None:
            thr = e.above if e.above is not None else e.below
            ax.axvline(float(thr), color="k", linestyle=":", linewidth=1, label="responder")  # type: ignore[arg-type]
        ax.set_xlabel(f"{e.name} ({e.spec.units})", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False)
    for j in range(E, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(f"{spec.name}: end points per arm (n = {spec.n_per_arm} per arm)", fontsize=10)
    return _save(fig, path)


def plot_trajectories(res: TrialResult, path: Path) -> Path | None:
    """Per arm: mean trajectory with a ±1 SD band (spread of patients) and the 95% CI of the mean."""

    spec = res.spec
    tv = trajectory_variables(spec)
    if not tv:
        return None
    cols = min(2, len(tv))
    rows = math.ceil(len(tv) / cols)
    fig = new_figure(5.0 * cols, 3.2 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, (label, var, _layer) in enumerate(tv):
        ax = axes[j // cols][j % cols]
        for a, arm in enumerate(spec.arms):
            n, mean, m2 = res.moments[a][label]
            with np.errstate(invalid="ignore", divide="ignore"):
                sd = np.sqrt(m2 / np.maximum(n - 1, 1))
                se = sd / np.sqrt(np.maximum(n, 1))
            t = res.grids[a]
            (line,) = ax.plot(t, mean, label=f"{arm.name} mean")
            ax.fill_between(t, mean - sd, mean + sd, alpha=0.15, color=line.get_color())
            ax.fill_between(
                t, mean - 1.96 * se, mean + 1.96 * se, alpha=0.4, color=line.get_color()
            )
        ax.set_xlabel("day", fontsize=8)
        ax.set_ylabel(f"{label} ({variable(var).units})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    for j in range(len(tv), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(
        "Mean per arm; light band ±1 SD of patients, dark band 95% CI of the mean", fontsize=9
    )
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def _fmt(x: Any) -> str:
    if isinstance(x, float | np.floating):
        if not math.isfinite(float(x)):
            return "–" if math.isnan(float(x)) else str(x)
        return f"{float(x):.4g}"
    return html.escape(str(x))


def _table(df: Any) -> str:
    if df is None or len(df) == 0:
        return "<p>(none)</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path | None) -> str:
    if path is None:
        return ""
    b64 = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{b64}">'


def report_html(res: TrialResult, figures: list[Path | None]) -> str:
    """The self-contained HTML report (disclaimer first)."""
    spec = res.spec
    rej = "".join(
        f"<li>{html.escape(k)}: {100 * v:.2f}% of draws rejected</li>"
        for k, v in res.rejection.items()
    )
    arms = "".join(
        f"<li><b>{html.escape(a.name)}</b>{' (control)' if i == spec.control else ''}: "
        f"{len(a.template.get('sessions', []))} session(s), horizon {a.horizon_days:g} d, "
        f"sites {', '.join(a.sites)}</li>"
        for i, a in enumerate(spec.arms)
    )
    design = (
        "split-face: every virtual patient receives both arms, one per side (paired analysis)"
        if spec.paired
        else "parallel: independent virtual patients in each arm"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(spec.name)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
.disclaimer{{background:#fff3cd;border:1px solid #e0c060;padding:.8em;border-radius:4px}}
table{{border-collapse:collapse;font-size:12px;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}
th{{background:#f3f3f3}}img{{max-width:100%}}</style></head><body>
<p class="disclaimer"><b>Research and planning aid, not a diagnosis or medical advice.</b> {html.escape(DISCLAIMER)}
These are simulated virtual patients, not trial participants.</p>
<h1>In-silico trial: {html.escape(spec.name)}</h1>
<p>Design: {design}. n = {spec.n_per_arm} per arm; seed {spec.seed}; population
<i>{html.escape(spec.population.name)}</i>; microneedling {html.escape(__version__)};
wall time {res.wall_s:.1f} s; mean integrator steps per case {res.n_steps:.0f}.</p>
<h2>Arms</h2><ul>{arms}</ul>
<h2>Per-arm end points</h2>
<p>Mean with 95% CI (Student t), SD, median, 10th–90th percentiles; responder rate with its 95% Wilson
interval where the spec gives a responder threshold.</p>
{_table(res.summary)}
<h2>Comparisons with the control arm</h2>
<p>{"Paired t test and Wilcoxon signed-rank test on the per-patient differences" if spec.paired else "Welch's t test and Mann–Whitney U test"};
Cohen's d with the pooled SD and Hedges' g (small-sample corrected){"; d_z = mean difference / SD of the differences" if spec.paired else ""}.
With many virtual patients even clinically irrelevant differences reach tiny p values: read the effect sizes.</p>
{_table(res.comparisons)}
<h2>Figures</h2>
{"".join(_img(f) for f in figures)}
<h2>Population plausibility filtering</h2><ul>{rej or "<li>no truncated variables</li>"}</ul>
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
</body></html>
"""


def write_trial(res: TrialResult, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write every output of a trial into ``out`` atomically (see the module docstring)."""
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        ds = res.dataset()
        with atomic_path(tmp / "trial.nc") as p:
            ds.to_netcdf(p)
        write_csv_atomic(res.summary, tmp / "summary.csv")
        write_csv_atomic(res.comparisons, tmp / "comparisons.csv")
        write_text_atomic(res.spec.to_toml(), tmp / "trial.toml")
        (tmp / "figures").mkdir()
        figs = [
            plot_distributions(res, tmp / "figures" / "distributions.png"),
            plot_trajectories(res, tmp / "figures" / "trajectories.png"),
        ]
        write_text_atomic(report_html(res, figs), tmp / "report.html")
    return out

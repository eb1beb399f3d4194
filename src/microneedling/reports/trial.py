"""Output of an in-silico trial: NetCDF, CSV tables, PNG figures and a self-contained HTML report.

``write_trial(result, DIR)`` writes, atomically (a reader sees all of it or none):

* ``trial.nc``: per-patient end points (dims arm, patient, endpoint; units in ``endpoint_units``),
  patient covariates, per-arm trajectory bands (mean, SD, n per week), rejection rates, the spec;
* ``summary.csv``: per arm and end point: n, mean, SD, 95% CI, median, 10th/90th percentile,
  responder rate with its 95% Wilson interval; with parameter draws (K > 0) also the 80%/95%
  intervals over the per-draw means, the between-draw (epistemic) and within-draw (aleatory) SD
  and the variance decomposition (:func:`~microneedling.studies.trial.run.variance_components`);
* ``comparisons.csv``: each arm vs the control: difference with 95% CI, Cohen's d, Hedges' g,
  tests (Welch t and Mann-Whitney U, or paired t and Wilcoxon for split-face) with p values;
  with parameter draws the same intervals and decomposition of the difference
  (:func:`~microneedling.studies.trial.run.difference_components`);
* ``figures/distributions.png`` (end point distributions per arm) and
  ``figures/trajectories.png`` (mean with ±1 SD band and 95% CI of the mean, per arm), for print;
* ``report.html`` (a child of the one report shell, ``templates/trial.html.j2``) whose charts are
  the interactive ones of :mod:`microneedling.reports.charts` (one histogram per end point, one
  trajectory chart per variable; the Plotly library inlined, so the file opens offline) and
  ``trial.toml`` (the validated spec, arms inlined) and, when the arms name user molecules,
  ``molecules.toml`` (their tables: ``--molecules`` reads it back).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import __version__
from microneedling.engine.variables import variable
from microneedling.io import (
    atomic_directory,
    write_csv_atomic,
    write_netcdf_atomic,
    write_text_atomic,
)
from microneedling.reports import charts, page
from microneedling.reports.figures import (
    LABEL_SIZE,
    SMALL_SIZE,
    TITLE_SIZE,
    new_figure,
    save_png,
    wrap,
)
from microneedling.reports.format import (
    endpoint_label,
    format_interval,
    format_number,
    format_p,
    format_percent,
    human,
    pretty_units,
    with_units,
)
from microneedling.studies.trial.run import trajectory_variables

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from microneedling.studies.trial.run import TrialResult
    from microneedling.studies.trial.spec import EndpointDef

__all__ = [
    "GIVEN_SETS_COLUMN",
    "distribution_charts",
    "given_sets_cell",
    "plot_distributions",
    "plot_trajectories",
    "report_html",
    "trajectory_charts",
    "write_trial",
]


def _axis(text: str, units: str) -> str:
    u = pretty_units(units)
    return f"{text} ({u})" if u else text


def plot_distributions(res: TrialResult, path: Path) -> Path:
    """Histogram of each end point per arm (one panel per end point)."""

    spec = res.spec
    E = len(spec.endpoints)
    cols = min(3, E)
    rows = math.ceil(E / cols)
    fig = new_figure(4.4 * cols, 3.3 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, e in enumerate(spec.endpoints):
        ax = axes[j // cols][j % cols]
        data = [res.values[a, :, j] for a in range(len(spec.arms))]
        data = [x[np.isfinite(x)] for x in data]
        allv = np.concatenate(data) if data else np.array([])
        name = wrap(endpoint_label(e.name), 40)
        if allv.size == 0:
            ax.set_title(f"{name}\n(no values)", fontsize=SMALL_SIZE)
            continue
        lo, hi = float(allv.min()), float(allv.max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 31)
        for a, x in enumerate(data):
            ax.hist(x, bins=bins, alpha=0.5, density=True, label=spec.arms[a].name)
        thr = e.above if e.above is not None else e.below
        if thr is not None:
            ax.axvline(
                float(thr), color="k", linestyle=":", linewidth=1, label="responder threshold"
            )
        ax.set_title(name, fontsize=SMALL_SIZE)
        ax.set_xlabel(_axis("Value", e.spec.units), fontsize=SMALL_SIZE)
        ax.set_ylabel("Probability density", fontsize=SMALL_SIZE)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False)
    for j in range(E, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(
        f"{spec.name}: end points per arm (n = {spec.n_per_arm} per arm)", fontsize=TITLE_SIZE
    )
    return save_png(fig, path)


def plot_trajectories(res: TrialResult, path: Path) -> Path | None:
    """Per arm: mean trajectory with a ±1 SD band (spread of patients) and the 95% CI of the mean."""

    spec = res.spec
    tv = trajectory_variables(spec)
    if not tv:
        return None
    cols = min(2, len(tv))
    rows = math.ceil(len(tv) / cols)
    fig = new_figure(5.2 * cols, 3.5 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for j, (label, var, layer) in enumerate(tv):
        ax = axes[j // cols][j % cols]
        for arm_i, arm in enumerate(spec.arms):
            n, mean, m2 = res.moments[arm_i][label]
            with np.errstate(invalid="ignore", divide="ignore"):
                sd = np.sqrt(m2 / np.maximum(n - 1, 1))
                se = sd / np.sqrt(np.maximum(n, 1))
            t = res.grids[arm_i]
            (line,) = ax.plot(t, mean, label=f"{arm.name} mean")
            ax.fill_between(t, mean - sd, mean + sd, alpha=0.15, color=line.get_color())
            ax.fill_between(
                t, mean - 1.96 * se, mean + 1.96 * se, alpha=0.4, color=line.get_color()
            )
        v = variable(var)
        title = (v.label or v.long_name).removesuffix(", papillary")
        if v.layered:
            title += f", {layer} dermis"
        ax.set_title(wrap(title, 48), fontsize=SMALL_SIZE + 1)
        ax.set_xlabel("Time (d)", fontsize=LABEL_SIZE)
        ax.set_ylabel(wrap(_axis(v.long_name, v.units), 40), fontsize=SMALL_SIZE)
        ax.tick_params(labelsize=7)
        ax.grid(True, alpha=0.25)
        ax.legend(fontsize=7, frameon=False)
    for j in range(len(tv), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.suptitle(
        "Mean per arm; light band ±1 SD of patients, dark band 95% CI of the mean",
        fontsize=TITLE_SIZE - 1,
    )
    return save_png(fig, path)


# ----------------------------------------------------------------------------- charts
def distribution_charts(res: TrialResult) -> list[charts.Chart]:
    """One interactive histogram per end point: the virtual patients of each arm overlaid (as
    probability densities on common bins), the responder threshold dotted."""
    spec = res.spec
    out = []
    for j, e in enumerate(spec.endpoints):
        label = endpoint_label(e.name)
        thr = e.above if e.above is not None else e.below
        groups = [(arm.name, res.values[a, :, j]) for a, arm in enumerate(spec.arms)]
        n = int(np.isfinite(res.values[:, :, j]).sum())
        summary = f"Distribution over the virtual patients of each arm ({n} values)"
        if thr is not None:
            summary += f"; dotted line: the responder threshold, {_rule(e)}"
        out.append(
            charts.histogram_chart(
                f"chart-distribution-{j}",
                label,
                groups,
                x_title=_axis(label, e.spec.units),
                threshold=None if thr is None else float(thr),
                summary=summary + ".",
            )
        )
    return out


def _session_days(res: TrialResult) -> list[float]:
    """Session days shared by every arm (none when the arms' schedules differ)."""
    days = [
        sorted({float(s["day"]) for s in arm.template.get("sessions", []) if "day" in s})
        for arm in res.spec.arms
    ]
    return days[0] if days and all(d == days[0] for d in days) else []


def trajectory_charts(res: TrialResult) -> list[charts.Chart]:
    """One interactive chart per trajectory variable: each arm's mean over its virtual patients
    with a band of ±1 SD (the spread of patients; the trial keeps moments, not every patient's
    curve), sessions dashed when the arms share them."""
    spec = res.spec
    sessions = _session_days(res)
    out = []
    for j, (label, var, layer) in enumerate(trajectory_variables(spec)):
        v = variable(var)
        title = (v.label or v.long_name).removesuffix(", papillary")
        if v.layered:
            title += f", {layer} dermis"
        lines = []
        for arm_i, arm in enumerate(spec.arms):
            n, mean, m2 = res.moments[arm_i][label]
            with np.errstate(invalid="ignore", divide="ignore"):
                sd = np.sqrt(m2 / np.maximum(n - 1, 1))
            lines.append(
                charts.series(arm.name, res.grids[arm_i], mean, low=mean - sd, high=mean + sd)
            )
        out.append(
            charts.line_chart(
                f"chart-trajectory-{j}",
                title,
                lines,
                x_title="Day of the course (d)",
                y_title=_axis(v.long_name, v.units),
                units=pretty_units(v.units),
                sessions=sessions,
                band_label="±1 SD of patients",
                summary=f"Mean over the {spec.n_per_arm} virtual patients of each arm; band: "
                "±1 standard deviation of the patients.",
            )
        )
    return out


# ----------------------------------------------------------------------------- page data
def _rule(e: EndpointDef) -> str:
    if e.above is not None:
        return f"≥ {with_units(f'{e.above:g}', e.spec.units)}"
    if e.below is not None:
        return f"≤ {with_units(f'{e.below:g}', e.spec.units)}"
    return ""


def _group(e: EndpointDef) -> str:
    u = pretty_units(e.spec.units)
    return endpoint_label(e.name) + (f" ({u})" if u else "")


def _get(row: Any, col: str) -> float:
    try:
        return float(row[col])
    except (KeyError, TypeError, ValueError):
        return math.nan


def _count(x: float) -> str:
    return str(int(x)) if math.isfinite(x) else "—"


def _ci(row: Any, low: str, high: str, fmt: Any = format_number) -> str:
    lo, hi = _get(row, low), _get(row, high)
    if math.isnan(lo) or math.isnan(hi):
        return ""
    sep = " to " if lo < 0 or hi < 0 else "–"
    return f"95% CI {fmt(lo)}{sep}{fmt(hi)}"


def _summary(res: TrialResult) -> dict[str, Any]:
    """Per arm and end point: n, mean with its 95% CI, SD, median, 10th–90th percentile and the
    responder rate with its 95% Wilson interval (one block per end point, in its units)."""
    df = res.summary
    rules = any(e.above is not None or e.below is not None for e in res.spec.endpoints)
    columns = [
        page.column("Arm"),
        page.column("n", num=True),
        page.column("Mean", num=True, note="with its 95% confidence interval (Student t)"),
        page.column("SD", num=True),
        page.column("Median", num=True),
        page.column("10th–90th percentile", num=True),
    ]
    if rules:
        columns.append(page.column("Responders", num=True, note="95% Wilson interval below"))
    drawn = res.parameter_draws is not None
    if drawn:
        columns += _draw_columns("mean")
    rows: list[Any] = []
    for e in res.spec.endpoints:
        sub = df[df["endpoint"] == e.name] if len(df) else df
        rule = _rule(e)
        rows.append({"group": _group(e) + (f" · responder: {rule}" if rule else "")})
        for _, r in sub.iterrows():
            cells: list[Any] = [
                str(r["arm"]),
                _count(_get(r, "n")),
                page.cell(format_number(r["mean"]), interval=_ci(r, "ci95_low", "ci95_high")),
                format_number(r["sd"]),
                format_number(r["median"]),
                _interval(_get(r, "p10"), _get(r, "p90")),
            ]
            if rules:
                rate = _get(r, "responder_rate")
                cells.append(
                    page.cell(
                        format_percent(rate) if not math.isnan(rate) else "—",
                        interval=_ci(
                            r, "responder_ci95_low", "responder_ci95_high", format_percent
                        ),
                    )
                )
            if drawn:
                cells += _draw_cells(r)
            rows.append(cells)
    return page.table(columns, rows, label="Per-arm end points")


def _interval(lo: float, hi: float) -> str:
    if math.isnan(lo) or math.isnan(hi):
        return "—"
    sep = " to " if lo < 0 or hi < 0 else "–"
    return f"{format_number(lo)}{sep}{format_number(hi)}"


def _draw_columns(what: str) -> list[dict[str, Any]]:
    """The parameter-uncertainty columns (trials with parameter draws)."""
    return [
        page.column(
            "Over parameter draws",
            num=True,
            note=f"80% interval of the per-draw {what}s (10th–90th percentile over the posterior "
            "parameter sets); the 95% interval below",
        ),
        page.column(
            "SD: parameters / patients",
            num=True,
            note="between-draw (epistemic) SD, patient noise removed / within-draw (aleatory) SD",
        ),
        page.column(
            "Parameter share",
            num=True,
            note="share of the variance due to parameter uncertainty (random-effects ANOVA)",
        ),
    ]


GIVEN_SETS_COLUMN = page.column(
    "95% CI given the parameter sets",
    num=True,
    note="the difference's 95% confidence interval with the parameter sets held fixed: Student t "
    "on the within-set spread only (the Welch or paired interval pools the spread between sets "
    "in); p below",
)
"""The comparisons' column of :func:`given_sets_cell` (the report and the web page)."""


def given_sets_cell(r: Any) -> Any:
    """A comparison row's (a ``comparisons.csv`` row, or its JSON) 95% CI given the parameter
    sets, with the t test's p below; ``"—"`` where it is not estimable."""
    iv = format_interval(_get(r, "given_draws_ci95_low"), _get(r, "given_draws_ci95_high"))
    if not iv:
        return "—"
    return page.cell(iv, interval=f"p {format_p(_get(r, 'given_draws_p_t'))}")


def _draw_cells(r: Any) -> list[Any]:
    lo95, hi95 = _get(r, "epistemic95_low"), _get(r, "epistemic95_high")
    below = "" if math.isnan(lo95) or math.isnan(hi95) else f"95%: {_interval(lo95, hi95)}"
    share = _get(r, "epistemic_fraction")
    return [
        page.cell(_interval(_get(r, "epistemic80_low"), _get(r, "epistemic80_high")),
                  interval=below),
        f"{format_number(_get(r, 'epistemic_sd'))} / {format_number(_get(r, 'aleatory_sd'))}",
        format_percent(share) if not math.isnan(share) else "—",
    ]  # fmt: skip


def _comparisons(res: TrialResult) -> dict[str, Any]:
    """Each arm vs the control: difference with its 95% CI, effect sizes, tests and p values."""
    df: pd.DataFrame = res.comparisons
    paired = res.spec.paired
    rank = "Wilcoxon W" if paired else "Mann–Whitney U"
    columns = [
        page.column("Arm vs control"),
        page.column("n", num=True, note="patients with a value in the arm / in the control"),
        page.column("Difference of means", num=True, note="arm − control, 95% CI below"),
        page.column("Cohen's d", num=True),
        page.column("Hedges' g", num=True),
    ]
    if paired:
        columns.append(
            page.column(
                "Cohen's d, paired (dz)", num=True, note="mean difference / SD of differences"
            )
        )
    columns += [
        page.column("t statistic", num=True),
        page.column("p (t test)", num=True),
        page.column(rank, num=True),
        page.column("p (rank test)", num=True),
    ]
    drawn = res.parameter_draws is not None
    if drawn:
        columns += [*_draw_columns("difference"), GIVEN_SETS_COLUMN]
    rows: list[Any] = []
    for e in res.spec.endpoints:
        sub = df[df["endpoint"] == e.name] if len(df) else df
        if not len(sub):
            continue
        rows.append({"group": _group(e)})
        for _, r in sub.iterrows():
            cells: list[Any] = [
                f"{r['arm']} vs {r['control']}",
                f"{_count(_get(r, 'n_arm'))} / {_count(_get(r, 'n_control'))}",
                page.cell(
                    format_number(_get(r, "difference")),
                    interval=_ci(r, "ci95_low", "ci95_high"),
                ),
                format_number(_get(r, "cohens_d")),
                format_number(_get(r, "hedges_g")),
            ]
            if paired:
                cells.append(format_number(_get(r, "cohens_dz")))
            cells += [
                format_number(_get(r, "t_stat")),
                format_p(_get(r, "p_t")),
                format_number(_get(r, "w_stat" if paired else "u_stat")),
                format_p(_get(r, "p_rank")),
            ]
            if drawn:
                cells += [*_draw_cells(r), given_sets_cell(r)]
            rows.append(cells)
    return page.table(columns, rows, label="Comparisons with the control arm",
                      empty="No arm to compare with the control.")  # fmt: skip


def report_html(res: TrialResult) -> str:
    """The self-contained HTML report (a child of the report shell; its charts' library
    inlined)."""
    spec = res.spec
    design = (
        "split-face: every virtual patient receives both arms, one per side (paired analysis)"
        if spec.paired
        else "parallel: independent virtual patients in each arm"
    )
    arms = [
        f"{a.name}{' (control)' if i == spec.control else ''}: "
        f"{len(a.template.get('sessions', []))} session(s), follow-up {a.horizon_days:g} d, "
        f"sites {', '.join(human(s) for s in a.sites)}"
        for i, a in enumerate(spec.arms)
    ]
    rejection = [f"{k}: {format_percent(v)} of draws rejected" for k, v in res.rejection.items()]
    provenance = page.kv(
        [
            ("Report written by", f"microneedling {__version__}"),
            ("Random seed", spec.seed),
            ("Wall time", f"{res.wall_s:.1f} s"),
            ("Mean integrator steps per case", f"{res.n_steps:.0f}"),
        ]
    )
    distributions = distribution_charts(res)
    trajectories = trajectory_charts(res)
    html = page.render(
        "trial.html.j2",
        kind="In-silico trial",
        title=spec.name,
        subtitle="Simulated virtual patients, not trial participants",
        toc=[
            ("design", "Design"),
            ("summary", "Per-arm end points"),
            ("comparisons", "Comparisons"),
            ("distributions", "Distributions"),
            ("trajectories", "Trajectories"),
            ("population", "Population"),
            ("provenance", "Provenance"),
        ],
        provenance=provenance,
        design=page.kv(
            [
                ("Design", design),
                ("Virtual patients per arm", spec.n_per_arm),
                ("Population", spec.population.name),
                ("Random seed", spec.seed),
                ("Parameters", res.parameter_source),
                *([("Note", res.draw_warning)] if res.draw_warning else []),
            ]
        ),
        arms=arms,
        paired=spec.paired,
        drawn=res.parameter_draws is not None,
        summary=_summary(res),
        comparisons=_comparisons(res),
        distributions=distributions,
        trajectories=trajectories,
        rejection=rejection,
        **charts.context([*distributions, *trajectories]),
    )
    return charts.embed_library(html)


def write_trial(res: TrialResult, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write every output of a trial into ``out`` atomically (see the module docstring)."""
    out = Path(out)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        ds = res.dataset()
        write_netcdf_atomic(ds, tmp / "trial.nc")
        write_csv_atomic(res.summary, tmp / "summary.csv")
        write_csv_atomic(res.comparisons, tmp / "comparisons.csv")
        write_text_atomic(res.spec.to_toml(), tmp / "trial.toml")
        molecules = res.spec.molecules_toml()
        if molecules is not None:  # the user molecules the arms name: trial.toml needs them
            write_text_atomic(molecules, tmp / "molecules.toml")
        (tmp / "figures").mkdir()
        plot_distributions(res, tmp / "figures" / "distributions.png")
        plot_trajectories(res, tmp / "figures" / "trajectories.png")
        write_text_atomic(report_html(res), tmp / "report.html")
    return out

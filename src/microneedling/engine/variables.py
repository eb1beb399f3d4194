"""THE table of output variables: every quantity a run reports, defined once.

Each :class:`Variable` names a quantity the engine produces, its units and long name (the Dataset's
CF attributes), its kind and shape, the claim it evidences and how a course summarises it. Every
other place derives from this table and nothing else: the Dataset's labels
(:mod:`microneedling.engine.simulate`), the end-point grammar (:mod:`microneedling.engine.endpoints`),
the end-point table (:meth:`microneedling.engine.result.Result.endpoints`) and the sections of the
run report (:mod:`microneedling.reports.run`). A new observable is one row here plus the physics
that computes it (:func:`microneedling.physics.observe.observables` or a per-session output of
:func:`microneedling.engine.batch.session_stats`).

Kinds:

``time``
    A time-resolved observable, dims (site, time), or (site, layer, time) when ``layered`` (the
    two dermal layers; the epidermis row is NaN).
``session``
    A per-session outcome, dims (site, session), summarised over a course by ``reduce``.
``setting``
    A per-session record of what was done or reached (needle length, punctures, depth), dims
    (site, session) or (site, session, layer) when ``layered`` (all three layers).

The functions below read :data:`VARIABLES` at each call, so a row added to it (or patched in by a
test) appears everywhere at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CLAIMS",
    "VARIABLES",
    "Variable",
    "by_name",
    "endpoint_variables",
    "session_variables",
    "setting_variables",
    "time_variables",
    "variable",
]

Kind = Literal["time", "session", "setting"]
Reduce = Literal["", "sum", "max", "mean"]
Better = Literal["", "higher", "lower"]

CLAIMS: tuple[str, ...] = (
    "collagen",
    "elastin",
    "firmness",
    "wrinkles",
    "texture",
    "acne scars",
    "pores",
    "stretch marks",
    "pigmentation",
    "downtime",
    "risk",
    "absorption",
)
"""The claims of microneedling that outputs evidence, in the order reports show them."""


@dataclass(frozen=True)
class Variable:
    """One output variable of a run.

    Attributes
    ----------
    name:
        The Dataset variable and end-point name.
    units:
        Units of the values (``microneedling.units`` spelling).
    long_name:
        CF ``long_name``: what the number is, in words.
    kind:
        ``time``, ``session`` or ``setting`` (module docstring).
    layered:
        Time variables: resolved in the two dermal layers; settings: in all three layers.
    claim:
        The claim this variable evidences (one of :data:`CLAIMS`), or ``""`` for a mechanistic
        quantity (inflammation, fibroblasts) that is shown but is not an end point.
    label:
        Short human label for end-point tables; ``""``: not an end point.
    patient_label:
        The label in words for the patient (the handout), where :attr:`label` is a
        practitioner's term; ``""``: :attr:`label` reads plainly as it is (:attr:`plain_label`).
    reduce:
        Session variables: how a course summarises them (``sum`` of downtime days, ``max`` of a
        risk, ``mean`` of an amount).
    better:
        Which direction is an improvement (``lower`` for depths, widths, diameters and melanin;
        ``higher`` for collagen and elasticity), ``""`` where it is not a treatment goal.
    figure:
        The run report's figure that draws the variable (``collagen_elastin``, ``claims``,
        ``downtime``, ``absorption``) or ``""``.
    scale:
        For a dimensionless end point (units ``1``): what its number is, for a table's units
        column (``probability``, ``grade, 1–4``); ``""`` where the units say it.
    """

    name: str
    units: str
    long_name: str
    kind: Kind
    layered: bool = False
    claim: str = ""
    label: str = ""
    reduce: Reduce = ""
    better: Better = ""
    figure: str = ""
    scale: str = ""
    patient_label: str = ""

    @property
    def plain_label(self) -> str:
        """The label a patient reads (the handout): :attr:`patient_label`, else :attr:`label`,
        else the long name."""
        return self.patient_label or self.label or self.long_name

    @property
    def is_endpoint(self) -> bool:
        """Reported in end-point tables (it has a label)."""
        return bool(self.label)

    @property
    def signed(self) -> bool:
        """A change from baseline (``%`` units), which can be negative; every other variable is a
        level, amount, time or probability and is never negative (tests/engine/test_variables.py
        checks this on simulated courses). The calibration compares levels on a log scale."""
        return self.units == "%"

    @property
    def summary_word(self) -> str:
        """How a course summary of a session variable reads: total, worst session, per session."""
        return {"sum": "total", "max": "worst session", "mean": "per session"}.get(self.reduce, "")


VARIABLES: tuple[Variable, ...] = (
    # --- dermis: collagen and elastin, per layer
    Variable("collagen_change", "%", "New dermal collagen (I+III), % of baseline collagen", "time",
             layered=True, claim="collagen", label="Dermal collagen (I+III), papillary", better="higher",
             figure="collagen_elastin"),
    Variable("collagen_I_change", "%", "Collagen I change, % of baseline collagen I", "time",
             layered=True, claim="collagen", better="higher"),
    Variable("collagen_III_change", "%", "Collagen III change, % of baseline collagen III", "time",
             layered=True, claim="collagen", better="higher"),
    Variable("mature_collagen_change", "%",
             "Cross-linked (mature) new collagen, % of baseline collagen", "time", layered=True,
             claim="collagen", label="Mature (cross-linked) new collagen, papillary",
             better="higher"),
    Variable("elastin_change", "%", "Net elastin change, % of baseline elastin", "time",
             layered=True, claim="elastin", label="Dermal elastin, papillary", better="higher",
             figure="collagen_elastin"),
    Variable("new_elastin_change", "%", "New elastic fibre (tropoelastin), % of baseline elastin",
             "time", layered=True, claim="elastin", better="higher"),
    Variable("dermal_density_change", "%", "Ultrasound dermal density change vs baseline", "time",
             claim="collagen", label="Dermal density (ultrasound)", better="higher"),
    Variable("dermal_thickness", "um", "Dermal thickness", "time", claim="texture",
             label="Dermal thickness", better="higher", figure="claims",
             patient_label="Thickness of the skin (dermis)"),
    Variable("epidermal_thickness_change", "%", "Epidermal thickness change vs baseline", "time",
             claim="texture", label="Epidermal thickness", better="higher"),
    # --- clinical observables
    Variable("elasticity_index", "1",
             "Cutometer R2 gross elasticity (0-1): baseline from age, sex and site; change from "
             "functional elastin and structural collagen", "time",
             claim="firmness", label="Elasticity index (R2-like)", better="higher",
             figure="claims", scale="index, 0–1",
             patient_label="Skin springiness (0 to 1, higher is springier)"),
    Variable("firmness_change", "%",
             "Firmness change vs baseline (inverse Cutometer R0 suction deformation; dermal "
             "modulus from structural collagen)", "time", claim="firmness",
             label="Firmness", better="higher"),
    Variable("texture_roughness", "um",
             "Areal surface roughness Sa (profilometry): micro-relief, scars and pores", "time",
             claim="texture", label="Surface roughness (Sa)", better="lower"),
    Variable("wrinkle_depth", "um", "Wrinkle depth", "time", claim="wrinkles",
             label="Wrinkle depth", better="lower", figure="claims"),
    Variable("scar_depth", "mm", "Atrophic scar depth (expected over the site's scars)", "time",
             claim="acne scars", label="Atrophic scar depth", better="lower", figure="claims",
             patient_label="Depth of the acne scars"),
    Variable("scar_grade", "1",
             "Expected Goodman & Baron qualitative scar grade (1-4) from the scars' depth",
             "time", claim="acne scars", label="Scar grade (Goodman & Baron)", better="lower", scale="grade, 1–4"),
    Variable("scar_grade_responder", "1",
             "Chance that the scars' Goodman & Baron grade has fallen by at least one grade since "
             "baseline (same assessor at both visits)",
             "time", claim="acne scars", label="Chance of a one-grade improvement",
             better="higher", scale="probability"),
    Variable("scar_grade_responder_two", "1",
             "Chance that the scars' Goodman & Baron grade has fallen by at least two grades since "
             "baseline (same assessor at both visits)",
             "time", claim="acne scars", label="Chance of a two-grade improvement",
             better="higher", scale="probability"),
    Variable("pore_diameter", "um", "Pore diameter", "time", claim="pores", label="Pore diameter",
             better="lower", figure="claims", patient_label="Pore size (width)"),
    Variable("striae_width", "mm", "Stretch-mark visible width", "time", claim="stretch marks",
             label="Stretch-mark width", better="lower", figure="claims"),
    Variable("striae_depth", "mm", "Stretch-mark depression depth", "time",
             claim="stretch marks", label="Stretch-mark depth", better="lower"),
    Variable("melanin_index", "1", "Melanin index of the lesion (Mexameter-like units; floor: the surrounding skin)", "time",
             claim="pigmentation", label="Melanin index", better="lower", figure="claims", scale="Mexameter-like units",
             patient_label="Darkness of the patch (skin pigment meter)"),
    Variable("masi_score", "1", "Melasma Area and Severity Index (0-48): area, darkness and homogeneity of the lesion", "time",
             claim="pigmentation", label="MASI", better="lower", scale="score, 0–48"),
    Variable("mmasi_score", "1", "Modified MASI (0-24): area and darkness of the lesion", "time",
             claim="pigmentation", label="Modified MASI", better="lower", scale="score, 0–24"),
    # --- mechanism (shown, not end points)
    Variable("erythema", "1", "Redness signal (immediate vascular response + inflammation)",
             "time", claim="downtime", figure="downtime"),
    Variable("oedema", "1", "Swelling signal", "time", claim="downtime", figure="downtime"),
    Variable("pih_stimulus", "1", "Inflammation-induced pigment stimulus (drives PIH)", "time",
             claim="risk"),
    Variable("inflammation", "1", "Inflammation (neutrophils + M1; 1 = saturating response)",
             "time", layered=True),
    Variable("fibroblasts", "1", "Fibroblast density relative to baseline", "time", layered=True),
    # --- per session: what was done and reached, then the outcomes
    Variable("session_day", "d", "Day of the session", "setting"),
    Variable("needle_length", "mm", "Needle length", "setting"),
    Variable("puncture_density", "cm^-2", "Punctures per cm²", "setting"),
    Variable("penetration_depth", "um", "Channel depth reached", "setting"),
    Variable("closure_hours", "h", "Time for the channels to reseal (95% of the barrier)",
             "setting"),
    Variable("reaches_capillaries", "1",
             "Channel reaches the papillary capillaries (pinpoint bleeding)", "setting"),
    Variable("injured_fraction", "1", "Injured volume fraction", "setting", layered=True),
    Variable("erythema_days", "d", "Days of visible redness after the session (expected over patients)", "session",
             claim="downtime", label="Visible redness, all sessions", reduce="sum",
             better="lower"),
    Variable("oedema_days", "d", "Days of visible swelling after the session (expected over patients)", "session",
             claim="downtime", label="Visible swelling, all sessions", reduce="sum",
             better="lower"),
    Variable("downtime_days", "d", "Days on which any sign of the session is visible: redness, swelling or bruising (expected over patients)", "session",
             claim="downtime", label="Downtime (any visible sign), all sessions", reduce="sum",
             better="lower"),
    Variable("pih_risk", "1",
             "Probability of post-inflammatory hyperpigmentation after the session (one threshold per patient: the course risk is the maximum over sessions)", "session",
             claim="risk", label="Post-inflammatory hyperpigmentation risk", reduce="max",
             better="lower", scale="probability",
             patient_label="Chance of darker patches after a session"),
    Variable("absorbed_amount", "ug/cm^2", "Topical delivered into the viable skin", "session",
             claim="absorption", label="Topical absorbed per session", reduce="mean",
             better="higher", figure="absorption"),
    Variable("absorbed_intact", "ug/cm^2",
             "Same topical through intact skin over the contact time (the enhancement ratio's denominator)",
             "session", claim="absorption", reduce="mean"),
    Variable("enhancement_ratio", "1",
             "Absorption with channels / intact skin (inf: no intact-skin path, e.g. hyaluronan)",
             "session", claim="absorption", label="Absorption vs intact skin", reduce="mean",
             better="higher", figure="absorption", scale="× intact skin"),
    Variable("absorbed_by_layer", "ug/cm^2", "Topical absorbed per layer", "setting",
             layered=True, claim="absorption"),
)  # fmt: skip
"""Every output variable, in the order tables and reports show them."""


def by_name() -> dict[str, Variable]:
    """``{name: Variable}`` of :data:`VARIABLES`."""
    return {v.name: v for v in VARIABLES}


def variable(name: str) -> Variable:
    """The row of ``name``; a ``KeyError`` names the known variables."""
    table = by_name()
    if name not in table:
        raise KeyError(f"no output variable {name!r}; known: {', '.join(table)}")
    return table[name]


def time_variables() -> tuple[Variable, ...]:
    """The time-resolved observables, in table order."""
    return tuple(v for v in VARIABLES if v.kind == "time")


def session_variables() -> tuple[Variable, ...]:
    """The per-session outcomes, in table order."""
    return tuple(v for v in VARIABLES if v.kind == "session")


def setting_variables() -> tuple[Variable, ...]:
    """The per-session records of what was done and reached, in table order."""
    return tuple(v for v in VARIABLES if v.kind == "setting")


def endpoint_variables() -> tuple[Variable, ...]:
    """The variables end-point tables report (those with a label), in table order."""
    return tuple(v for v in VARIABLES if v.is_endpoint)

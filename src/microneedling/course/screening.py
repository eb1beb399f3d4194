"""Screening before planning: the patient file's questionnaire against ``data/contraindications.toml``.

Each rule reads one questionnaire answer (about the person, or about one treated site) and is
``absolute`` (the planner refuses to plan, giving the reason and the source) or ``relative`` (the
planner plans and the plan carries the warning). Windows in months ("isotretinoin within 6 months")
come from ``data/parameters/safety.toml`` (isotretinoin) and ``data/parameters/planning.toml``
(radiotherapy, filler) so every number has its units and source.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from microneedling.course.patient import PatientFile, PatientHistory, PatientSite
from microneedling.errors import MicroneedlingError, ParameterError
from microneedling.io import data_path, read_toml
from microneedling.parameters.parameter_set import load_parameters, load_references

__all__ = ["Finding", "PlanRefused", "Rule", "Screening", "load_rules", "screen"]


@dataclass(frozen=True)
class Rule:
    """One screening rule of ``data/contraindications.toml``."""

    key: str
    classification: str  # absolute | relative
    scope: str  # patient | site
    field: str
    test: str  # true | within
    threshold: str | None
    threshold_months: float | None
    course_flag: str | None
    reason: str
    sources: tuple[str, ...]
    judgement: bool
    note: str


@dataclass(frozen=True)
class Finding:
    """A rule that fired, for the person or one site."""

    rule: Rule
    site: str | None
    value: Any
    site_index: int | None = None

    @property
    def absolute(self) -> bool:
        return self.rule.classification == "absolute"

    @property
    def field_path(self) -> str:
        if self.site_index is not None:
            return f"sites[{self.site_index}].{self.rule.field}"
        return f"history.{self.rule.field}"

    def citations(self) -> list[str]:

        refs = load_references()
        return [refs[k].citation for k in self.rule.sources]

    def text(self) -> str:
        """One line: what, where, why, classification and sources."""
        where = f" at {self.site}" if self.site else ""
        window = (
            f" (within {self.rule.threshold_months:g} months, {self.rule.threshold})"
            if self.rule.test == "within"
            else ""
        )
        judged = "; classification is a judgement" if self.rule.judgement else ""
        return (
            f"{self.rule.classification} contraindication [{self.rule.key}]{where}: "
            f"{self.field_path} = {self.value!r}{window}: {self.rule.reason} "
            f"(sources: {', '.join(self.rule.sources)}{judged})"
        )


class PlanRefused(MicroneedlingError):
    """The planner will not plan: an absolute contraindication, or no plan meets the limits."""

    def __init__(self, reason: str, findings: tuple[Finding, ...] = ()) -> None:
        self.reason = reason
        self.findings = findings
        super().__init__(reason)


@dataclass(frozen=True)
class Screening:
    """Every finding for a patient file, absolute ones first."""

    findings: tuple[Finding, ...]

    @property
    def absolute(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.absolute)

    @property
    def relative(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.absolute)

    @property
    def refused(self) -> bool:
        return bool(self.absolute)

    def raise_if_refused(self) -> None:
        """Raise :class:`PlanRefused` naming the first absolute finding (and how many more)."""
        if not self.absolute:
            return
        first = self.absolute[0]
        more = f" (+{len(self.absolute) - 1} more)" if len(self.absolute) > 1 else ""
        raise PlanRefused(f"plan refused: {first.text()}{more}", self.absolute)

    def course_history(self, patient: PatientFile) -> dict[str, Any]:
        """The course file's ``patient.history`` table carrying the relative findings."""
        out: dict[str, Any] = {}
        iso = patient.history.isotretinoin_months_ago
        if iso is not None:
            out["isotretinoin_months_ago"] = float(iso)
        for f in self.findings:
            flag = f.rule.course_flag
            if flag and flag != "isotretinoin_months_ago":
                out[flag] = True
        return out


_REQUIRED = ("classification", "scope", "field", "test", "reason", "source", "judgement", "note")


@lru_cache(maxsize=1)
def load_rules() -> tuple[Rule, ...]:
    """Parse and check ``data/contraindications.toml`` (sources, fields, thresholds)."""

    raw = read_toml(data_path("contraindications.toml"))
    refs = load_references()
    ps = load_parameters()
    fields = {"patient": set(PatientHistory.model_fields), "site": set(PatientSite.model_fields)}
    rules = []
    for key, e in raw.items():
        missing = [k for k in _REQUIRED if k not in e]
        if missing:
            raise ParameterError(f"contraindications.{key}: missing {missing}")
        if e["classification"] not in ("absolute", "relative"):
            raise ParameterError(f"contraindications.{key}.classification: {e['classification']}")
        if e["scope"] not in fields or e["field"] not in fields[e["scope"]]:
            raise ParameterError(
                f"contraindications.{key}: no field {e['field']!r} in {e['scope']}"
            )
        sources = tuple(e["source"]) if isinstance(e["source"], list) else (str(e["source"]),)
        unknown = [s for s in sources if s not in refs]
        if unknown:
            raise ParameterError(f"contraindications.{key}: unknown sources {unknown}")
        months = None
        if e["test"] == "within":
            months = ps.value(str(e["threshold"]), "yr") * 12.0
        elif e["test"] != "true":
            raise ParameterError(f"contraindications.{key}.test: {e['test']!r}")
        rules.append(
            Rule(
                key=key,
                classification=str(e["classification"]),
                scope=str(e["scope"]),
                field=str(e["field"]),
                test=str(e["test"]),
                threshold=e.get("threshold"),
                threshold_months=months,
                course_flag=e.get("course_flag"),
                reason=str(e["reason"]),
                sources=sources,
                judgement=bool(e["judgement"]),
                note=str(e["note"]),
            )
        )
    return tuple(rules)


def _fires(rule: Rule, value: Any) -> bool:
    if rule.test == "true":
        return value is True
    return value is not None and rule.threshold_months is not None and value < rule.threshold_months


def screen(patient: PatientFile) -> Screening:
    """Apply every rule to the person and to each treated site; absolute findings first."""
    found: list[Finding] = []
    for rule in load_rules():
        if rule.scope == "patient":
            value = getattr(patient.history, rule.field)
            if _fires(rule, value):
                found.append(Finding(rule, None, value))
        else:
            for j, s in enumerate(patient.sites):
                value = getattr(s, rule.field)
                if _fires(rule, value):
                    found.append(Finding(rule, s.name, value, j))
    found.sort(key=lambda f: not f.absolute)
    return Screening(tuple(found))

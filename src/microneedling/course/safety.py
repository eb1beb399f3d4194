"""Safety limits of the input model: needle length per site, isotretinoin washout, default treated
areas (``data/parameters/safety.toml``, every number with its source), and the reasons that the
history flags of a patient are contraindications.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from microneedling.errors import ParameterError
from microneedling.io import data_path, read_toml
from microneedling.parameters.parameter_set import check_entry, load_references
from microneedling.vocabulary import SITES

__all__ = ["HISTORY_WARNINGS", "SafetyLimits", "safety_limits"]


# ------------------------------------------------------------------------------ safety.toml
@dataclass(frozen=True)
class SafetyLimits:
    """Numbers of ``data/parameters/safety.toml`` the input model applies (lengths in mm)."""

    max_needle_length_mm: Mapping[str, float]
    typical_needle_length_mm: Mapping[str, float]
    max_sources: tuple[str, ...]
    typical_sources: tuple[str, ...]
    isotretinoin_washout_months: float
    default_area_cm2: Mapping[str, float]


@lru_cache(maxsize=1)
def safety_limits() -> SafetyLimits:
    """Parse ``safety.toml`` (once per process) with the same checks as the parameter loader."""
    refs = load_references([data_path("references", "safety.toml")])
    raw = read_toml(data_path("parameters", "safety.toml"))
    params = {k: check_entry(f"safety.{k}", v, refs) for k, v in raw.items()}

    def table(name: str, units: str) -> dict[str, float]:
        p = params[name]
        missing = [s for s in SITES if not isinstance(p.value, dict) or s not in p.value]
        if missing:
            raise ParameterError(f"safety.{name}: no entry for site(s) {missing}")
        return {s: p.as_units(units, key=s) for s in SITES}

    limits = SafetyLimits(
        max_needle_length_mm=table("max_needle_length", "mm"),
        typical_needle_length_mm=table("typical_needle_length", "mm"),
        max_sources=params["max_needle_length"].sources,
        typical_sources=params["typical_needle_length"].sources,
        isotretinoin_washout_months=params["isotretinoin_washout"].as_units("yr") * 12.0,
        default_area_cm2=table("default_treatment_area", "cm^2"),
    )
    for s in SITES:
        if limits.typical_needle_length_mm[s] > limits.max_needle_length_mm[s]:
            raise ParameterError(f"safety.typical_needle_length[{s}] exceeds the maximum")
    return limits


HISTORY_WARNINGS = {
    "active_infection": "active infection at the treated site (herpes, impetigo, active acne) is a "
    "contraindication: needling can spread it; treat it first",
    "keloid_history": "a history of keloids is a contraindication: needle injury may trigger "
    "keloid or hypertrophic scarring, which the model's normal-healing parameters do not represent",
    "pregnant": "pregnancy: microneedling and most topicals have not been evaluated in pregnancy; "
    "treatment is usually deferred",
    "anticoagulants": "anticoagulant therapy: more bleeding and bruising when needles reach the "
    "dermis",
    "bleeding_disorder": "a bleeding disorder is a contraindication: bleeding and bruising when "
    "needles reach the dermis",
    "diabetes_uncontrolled": "uncontrolled diabetes: impaired wound healing and a higher infection "
    "risk; the model assumes normal healing",
    "immunosuppressed": "immunosuppression: impaired wound healing and a higher infection risk; "
    "the model assumes normal healing",
    "radiotherapy_recent": "recent radiotherapy: irradiated skin heals poorly; the model assumes "
    "normal healing",
    "eczema_psoriasis_active": "active eczema or psoriasis: needling can provoke lesions at the "
    "needled site (Koebner phenomenon)",
    "vitiligo": "vitiligo: needling can provoke new depigmented patches at the needled site "
    "(Koebner phenomenon)",
    "filler_recent": "recent dermal filler: needling over it risks displacement, infection and "
    "granulomas; wait until it has settled",
}

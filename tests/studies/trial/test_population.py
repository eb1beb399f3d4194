"""Virtual populations: sampled marginals match the declared ones; chunk-independent; refusals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from microneedling.errors import InputError
from microneedling.schema import MISSING
from microneedling.studies.trial.population import (
    BLOCK,
    Population,
    PopulationError,
    list_populations,
    load_population,
    rejection_rates,
    sample_patients,
)

N = 4000  # patients: KS/chi-square at this n detect a 5% error in a scale or a weight


def _pop(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "test",
        "age": {"distribution": "normal", "mean": 40.0, "sd": 10.0, "min": 25, "max": 70},
        "sex": {"distribution": "categorical", "weights": {"female": 0.7, "male": 0.3}},
        "fitzpatrick": {
            "distribution": "categorical",
            "weights": {"I": 0.1, "II": 0.2, "III": 0.3, "IV": 0.2, "V": 0.15, "VI": 0.05},
        },
        "conditions": [
            {
                "type": "acne_scar",
                "scar_type": {
                    "distribution": "categorical",
                    "weights": {"rolling": 1, "boxcar": 3},
                },
                "depth_mm": {
                    "distribution": "lognormal",
                    "median": 0.5,
                    "gsd": 1.6,
                    "min": 0.2,
                    "max": 1.5,
                },
                "count": {"distribution": "uniform", "low": 5, "high": 40},
            }
        ],
        "variability": {"k_1": {"sd_log": 0.3, "min": 0.5, "max": 2.0}, "mu_I": {"sd_log": 0.2}},
    }
    d.update(over)
    return d


@pytest.fixture(scope="module")
def sample() -> Any:
    return sample_patients(Population.from_dict(_pop()), 0, N, seed=123)


def test_age_is_the_declared_truncated_normal(sample: Any) -> None:
    a, b = (25 - 40) / 10, (70 - 40) / 10
    ks = stats.kstest(sample.age_years, stats.truncnorm(a, b, loc=40, scale=10).cdf)
    assert ks.pvalue > 0.01
    assert sample.age_years.min() >= 25 and sample.age_years.max() <= 70
    # a wrong declared scale is detected by the same test (it can fail)
    assert stats.kstest(sample.age_years, stats.truncnorm(a, b, loc=40, scale=12).cdf).pvalue < 0.01


def test_rejection_rate_is_the_truncated_mass(sample: Any) -> None:
    p_out = stats.norm.cdf(-1.5) + stats.norm.sf(3.0)  # P(age < 25 or > 70)
    rates = rejection_rates(sample.rejected)
    assert rates["age"] == pytest.approx(p_out, abs=4 * math.sqrt(p_out / N))
    assert rates["variability.mu_I"] == 0.0


@pytest.mark.parametrize(
    ("attr", "cats", "weights"),
    [
        ("sex", ["female", "male"], [0.7, 0.3]),
        ("fitzpatrick", [1, 2, 3, 4, 5, 6], [0.1, 0.2, 0.3, 0.2, 0.15, 0.05]),
    ],
)
def test_categorical_marginals_chi_square(
    sample: Any, attr: str, cats: list, weights: list
) -> None:
    x = getattr(sample, attr)
    observed = np.array([np.sum(x == c) for c in cats])
    assert observed.sum() == N
    assert stats.chisquare(observed, np.array(weights) * N).pvalue > 0.01


def test_condition_and_factor_marginals(sample: Any) -> None:
    _, fields = sample.conditions[0]
    s = math.log(1.6)
    lo, hi = (math.log(0.2 / 0.5)) / s, (math.log(1.5 / 0.5)) / s
    z = np.log(fields["depth_mm"] / 0.5) / s
    assert stats.kstest(z, stats.truncnorm(lo, hi).cdf).pvalue > 0.01
    frac_boxcar = np.mean(fields["scar_type"] == "boxcar")
    assert frac_boxcar == pytest.approx(0.75, abs=4 * math.sqrt(0.75 * 0.25 / N))
    assert (
        fields["count"].dtype.kind == "i"
        and 5 <= fields["count"].min() <= fields["count"].max() <= 40
    )
    k1 = sample.factors["k_1"]
    lo1, hi1 = math.log(0.5) / 0.3, math.log(2.0) / 0.3
    assert stats.kstest(np.log(k1) / 0.3, stats.truncnorm(lo1, hi1).cdf).pvalue > 0.01
    assert stats.kstest(np.log(sample.factors["mu_I"]) / 0.2, "norm").pvalue > 0.01


def test_same_patients_for_any_split() -> None:
    pop = Population.from_dict(_pop())
    whole = sample_patients(pop, 0, 2 * BLOCK + 17, seed=5)
    parts = [
        sample_patients(pop, a, b, seed=5)
        for a, b in [(0, 3), (3, BLOCK + 1), (BLOCK + 1, 2 * BLOCK + 17)]
    ]
    for name in ("age_years", "fitzpatrick", "sex", "index"):
        assert np.array_equal(
            getattr(whole, name), np.concatenate([getattr(p, name) for p in parts])
        )
    assert np.array_equal(whole.factors["k_1"], np.concatenate([p.factors["k_1"] for p in parts]))
    other = sample_patients(pop, 0, 50, seed=5, stream=1)
    assert not np.array_equal(other.age_years, whole.age_years[:50])


def test_patient_tables_fit_the_course_schema(sample: Any) -> None:
    p = sample.patient_of(0)
    assert isinstance(p["age_years"], int) and p["age_years"] == round(sample.age_years[0])
    c = sample.conditions_of(0)[0]
    assert c["type"] == "acne_scar" and isinstance(c["count"], int)


def test_presets_load() -> None:
    assert {"acne-scar-adults", "photoaging-adults"} <= set(list_populations())
    for name in list_populations():
        pop = load_population(name)
        b = sample_patients(pop, 0, 10, seed=0)
        assert len(b) == 10


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"age": {"distribution": "normal", "mean": 40.0, "sd": 10.0}}, "population.age"),
        ({"age": {"distribution": "gamma", "k": 1}}, "population.age.distribution"),
        (
            {"age": {"distribution": "normal", "mean": 40.0, "sd": -1.0, "min": 20, "max": 60}},
            "population.age.sd",
        ),
        (
            {"sex": {"distribution": "categorical", "weights": {"other": 1.0}}},
            "population.sex.weights",
        ),
        (
            {"fitzpatrick": {"distribution": "categorical", "weights": {"VII": 1.0}}},
            "population.fitzpatrick.weights",
        ),
        ({"variability": {"not_a_rate": {"sd_log": 0.1}}}, "population.variability.not_a_rate"),
        ({"variability": {"k_1": {"sd_log": -0.1}}}, "population.variability.k_1.sd_log"),
        (
            {
                "conditions": [
                    {"type": "acne_scar", "scar_type": "rolling", "depth_mm": 9.0, "count": 3}
                ]
            },
            "population.conditions[0]",
        ),
        ({"colour": "blue"}, "population.colour"),
    ],
)
def test_bad_population_refused(over: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as e:
        Population.from_dict(_pop(**over))
    assert e.value.field == field


def test_impossible_truncation_refused() -> None:
    d = _pop(age={"distribution": "normal", "mean": 20.0, "sd": 0.5, "min": 60, "max": 70})
    with pytest.raises(InputError) as e:
        Population.from_dict(d)
    assert e.value.field == "population.age"


# ------------------------------------------------------------------- the file, on the schema
def test_plain_values_are_fixed_or_one_category() -> None:
    d = _pop(age=30, sex="female", fitzpatrick="IV")
    d["conditions"][0].update(scar_type="boxcar", count=12)
    b = sample_patients(Population.from_dict(d), 0, 50, seed=3)
    assert np.all(b.age_years == 30.0) and set(b.sex) == {"female"} and set(b.fitzpatrick) == {4}
    _, fields = b.conditions[0]
    assert set(fields["scar_type"]) == {"boxcar"} and set(fields["count"]) == {12}


def test_every_problem_is_reported_with_its_field() -> None:
    d = _pop(
        age={"distribution": "normal", "mean": 40.0, "weights": {"a": 1.0}, "min": 20, "max": 60},
        sex={"distribution": "categorical", "weights": {"female": 1.0}, "min": 0},
        colour="blue",
    )
    d["conditions"][0]["depth_mm"] = "deep"
    d["variability"]["k_1"]["max"] = 0.4
    with pytest.raises(PopulationError) as e:
        Population.from_dict(d)
    assert [(p.field, p.value) for p in e.value.problems] == [
        ("population.age.sd", MISSING),
        ("population.age.weights", {"a": 1.0}),
        ("population.sex.min", 0),
        ("population.conditions[0].depth_mm", "deep"),
        ("population.variability.k_1.max", 0.4),
        ("population.colour", "blue"),
    ]
    assert isinstance(e.value, InputError) and e.value.field == "population.age.sd"
    assert "a number > min (0.5)" in str(e.value)


def test_category_fields_refuse_numeric_distributions() -> None:
    d = _pop()
    d["conditions"][0]["scar_type"] = {"distribution": "normal", "mean": 1.0, "sd": 1.0}
    with pytest.raises(InputError) as e:
        Population.from_dict(d)
    assert e.value.field == "population.conditions[0].scar_type.distribution"


def test_condition_refusal_names_the_course_field() -> None:
    d = _pop(conditions=[{"type": "acne_scar", "scar_type": "rolling", "depth_mm": 9.0}])
    with pytest.raises(InputError) as e:
        Population.from_dict(d)
    assert e.value.field == "population.conditions[0]"
    assert "depth_mm: got 9.0" in e.value.allowed and "count" in e.value.allowed


def test_population_files_are_read_safely(tmp_path: Path) -> None:
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'name = "\xff"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("name = = 1\n", encoding="utf-8")
    for path, words in ((binary, "UTF-8"), (broken, "valid TOML")):
        with pytest.raises(InputError) as e:
            load_population(path)
        assert e.value.field == "population" and words in e.value.allowed
    with pytest.raises(InputError) as e:
        load_population("martians")
    assert e.value.field == "population" and "acne-scar-adults" in e.value.allowed
    good = tmp_path / "pop.toml"
    good.write_text(
        "\n".join(
            [
                'name = "file"',
                'age = { distribution = "uniform", low = 20, high = 30 }',
                'sex = "male"',
                'fitzpatrick = "II"',
            ]
        ),
        encoding="utf-8",
    )
    pop = load_population("pop.toml", base=tmp_path)
    assert pop.name == "file" and pop.sex.categories == ("male",)

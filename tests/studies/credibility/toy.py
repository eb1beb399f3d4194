"""Cheap calibration problems for the sampler tests: a known map from two parameter scores to
Gaussian rows (no discrepancy scale, so tau does not enter the likelihood)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from microneedling.parameters.parameter_set import load_parameters
from microneedling.studies.credibility.calibrate import Factor, Problem
from microneedling.studies.credibility.likelihood import Likelihood, RowSpec


class ToyProblem(Problem):
    """Predictions ``model(z)`` (W, R) of the two parameter scores ``z`` (W, 2)."""

    model: Callable[[np.ndarray], np.ndarray] = staticmethod(lambda z: z)
    name = "toy"

    def predict(
        self, x: np.ndarray, *, strict: bool = False, columns: Sequence[int] | None = None
    ) -> np.ndarray:
        z, _, _ = self.split(x)
        self.n_evaluations += len(z)
        out: np.ndarray = type(self).model(z)
        if columns is not None:  # the other rows not computed, as in Problem.predict
            out = np.where(np.isin(np.arange(out.shape[1]), list(columns)), out, np.nan)
        return out

    def fingerprint(self) -> str:
        return f"{self.name}-test"


def toy_problem(cls: type[ToyProblem], observed: np.ndarray, se: np.ndarray) -> ToyProblem:
    """A ``cls`` problem over two factors with one Gaussian row per observation (own study)."""
    specs = [
        RowSpec(key=f"r{i}", kind="gaussian", study=f"s{i}", group=0, observed=float(y),
                se=float(s), scale=0.0)
        for i, (y, s) in enumerate(zip(observed, se, strict=True))
    ]  # fmt: skip
    factors = tuple(Factor(f"p{j}", (f"test.p{j}",), ((1.0, 0.5, 2.0),), "test") for j in range(2))
    return cls(
        rows=(),
        protocols={},
        settings={},
        base=load_parameters(),
        factors=factors,
        nuisances=(),
        group_names=("g",),
        group_prior_scale=np.array([0.3]),
        likelihood=Likelihood(specs, 1),
        pred_factor=np.ones(len(specs)),
    )

"""Pure, batch-first physics of microneedling: arrays in, arrays out, SI units (healing in days).

Modules, in the order a session flows through them:

* :mod:`.needles`: device → puncture density, penetration depth, channel geometry, layers reached;
  skin-layer thicknesses per site, sex and age.
* :mod:`.injury`: the puncture field × skin layers → injured volume fraction per layer.
* :mod:`.transport`: a topical product × open, resealing microchannels → amount absorbed per layer
  (homogenised: intact skin by ``intact_kp``, one leaky channel in its cell, finite dose).
* :mod:`.unitcell`: the resolved axisymmetric unit-cell solver (one channel in its cell), the
  reference the homogenised transport is checked against.
* :mod:`.healing_rhs`: the wound-healing ODE's right-hand side, Jacobian and block solve (numba).
* :mod:`.healing`: per-case parameter matrices, sessions as impulses, the batched healing solve.
* :mod:`.observe`: healing states → clinical observables (collagen, thickness, scar depth,
  pigmentation, redness, PIH risk).
* :mod:`.scars`: depressed features (acne scars, wrinkle grooves, striae) from their geometry:
  needle access to the floor, punctures in the footprint, the fill and release law, the Goodman &
  Baron grade and the roughness they add.
* :mod:`.pigment`: the melasma lesion's MASI / mMASI, the melanin index with its floor, PIH risk
  under a patient-level threshold.
* :mod:`.redness`: visible redness and swelling (immediate vascular response + inflammation, a
  visibility threshold spread over patients and skin types).
* :mod:`.percase`: the observation maps' coefficients of several parameter sets side by side, one
  value per case (an ensemble observed in one call).
* :mod:`.ode`: the batched stiff integrator (RODAS4 with impulses, :mod:`.ode.integrate`), the
  registry of right-hand sides it dispatches on (:mod:`.ode.registry`) and numba cache freshness
  (:mod:`.ode.cache`).

Names of sites and layers are in :mod:`microneedling.vocabulary`. Nothing here reads files, parses
input or imports from the layers above (course, engine, studies, reports, cli); parameters arrive as
:class:`~microneedling.parameters.parameter_set.ParameterSet` values or arrays.
"""

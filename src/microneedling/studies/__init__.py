"""Questions asked of the engine; each returns data and never renders.

``absorb`` (topical uptake per session, engine vs resolved unit cell), ``sensitivity`` (Sobol
indices), ``sbml`` (export of the healing model), ``trial/`` (virtual populations and in-silico
trials), ``planning/`` (the treatment planner) and ``credibility/`` (literature rows, calibration,
validation, verification and the credibility report's data).
"""

"""The batched stiff ODE integrator (:mod:`.integrate`, numba Rodas4 with sessions as impulses) and
the registry of right-hand sides it dispatches on (:mod:`.registry`)."""

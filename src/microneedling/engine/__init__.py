"""Course x ParameterSet -> BatchRun -> Result: the engine that runs the physics for courses.

:mod:`~microneedling.engine.prepare` lays courses out as arrays and runs the non-ODE physics;
:mod:`~microneedling.engine.batch` solves many cases in one batched healing solve;
:mod:`~microneedling.engine.endpoints` reads scalar end points from a batch;
:mod:`~microneedling.engine.simulate` labels one course's run as a
:class:`~microneedling.engine.result.Result`; :mod:`~microneedling.engine.executor` maps chunks of
work in process, on local processes or on a Dask cluster.
"""

"""A Python client of the service (``microneedling serve``), on httpx.

>>> from microneedling.client import Client                          # doctest: +SKIP
>>> client = Client.login("http://127.0.0.1:8000", "me@clinic.example", password)
>>> run = client.simulate("examples/acne-scars-rolling-cheek.toml", draws=0)
>>> ds = client.dataset(run["id"])              # the result as an xarray.Dataset
>>> client.endpoints(run["id"])                 # end points as a pandas DataFrame
>>> mol = client.create_molecule("house.toml")  # a topical a course may then name

Refusals come back as the package's own exceptions: bad input as
:class:`~microneedling.errors.InputFileError` (each problem an
:class:`~microneedling.errors.InputError` naming the field, the value and what is allowed, the same
words as the command line), anything else as :class:`ServiceError` with the status and the server's
one line. Courses, patient files, trial specs, molecule files and populations may be given as paths
(TOML or JSON) or mappings.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from microneedling.engine.result import Result
from microneedling.errors import InputError, InputFileError, MicroneedlingError
from microneedling.io import write_bytes_atomic
from microneedling.schema import MISSING

__all__ = ["Client", "ServiceError"]

TERMINAL = ("done", "failed", "cancelled")


class ServiceError(MicroneedlingError):
    """The service refused a request (not signed in, not found, too many requests, a failed run)."""

    def __init__(self, status: int, message: str, body: Any = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body


def _file(data: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A TOML or JSON file (by suffix) or a mapping, as a mapping."""
    if isinstance(data, Mapping):
        return dict(data)
    path = Path(data)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        loaded = json.loads(text)
        if not isinstance(loaded, dict):
            raise InputError(str(path), type(loaded).__name__, "a JSON object")
        return loaded
    return tomllib.loads(text)


def _raise(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        raise ServiceError(
            response.status_code, response.text[:500] or response.reason_phrase
        ) from None
    message = str(body.get("error", body)) if isinstance(body, dict) else str(body)
    problems = body.get("problems") if isinstance(body, dict) else None
    if response.status_code == 422 and problems:
        errors = [
            InputError(
                str(p.get("field")),
                MISSING if p.get("missing") else p.get("value"),
                str(p.get("allowed")),
            )
            for p in problems
        ]
        raise InputFileError(errors, source=str(body.get("source") or "request"))
    raise ServiceError(response.status_code, message, body)


class Client:
    """A session with the service: an API token (``Authorization: Bearer``) and a base URL."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        token: str | None = None,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.http = httpx.Client(
            base_url=self.base_url + "/api/v1",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    # ---------------------------------------------------------------------- plumbing
    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One request; the JSON answer (``None`` for 204); a refusal raises (see the module)."""
        response = self.http.request(method, path, **kwargs)
        _raise(response)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # --------------------------------------------------------------------------- auth
    @classmethod
    def login(
        cls,
        base_url: str,
        email: str,
        password: str,
        *,
        token_name: str = "python client",
        **kwargs: Any,
    ) -> Client:
        """A client with a new API token made from an e-mail address and password (the token is
        ``client.token``; keep it, e.g. in an environment variable, instead of the password)."""
        with cls(base_url, **kwargs) as anonymous:
            made = anonymous.request(
                "POST",
                "/auth/token",
                json={"email": email, "password": password, "name": token_name},
            )
        return cls(base_url, made["token"], **kwargs)

    def me(self) -> dict[str, Any]:
        return dict(self.request("GET", "/me"))

    def create_token(self, name: str) -> dict[str, Any]:
        """A new API token (``["token"]`` holds it; shown once)."""
        return dict(self.request("POST", "/tokens", json={"name": name}))

    def revoke_token(self, token_id: int) -> None:
        self.request("DELETE", f"/tokens/{token_id}")

    def change_password(self, current: str, new: str) -> None:
        """Change the signed-in user's password (at least 12 characters). The user's browser
        sessions end; API tokens, this client's included, stay valid."""
        self.request(
            "POST", "/me/password", json={"current_password": current, "new_password": new}
        )

    # ------------------------------------------------------------------------ records
    def create_patient(self, patient: str | Path | Mapping[str, Any]) -> dict[str, Any]:
        """Store a patient file (a path or a mapping)."""
        return dict(self.request("POST", "/patients", json=_file(patient)))

    def create_course(
        self, course: str | Path | Mapping[str, Any], patient_id: int | None = None
    ) -> dict[str, Any]:
        """Store a course (a path or a mapping), optionally under a stored patient."""
        body: dict[str, Any] = {"course": _file(course)}
        if patient_id is not None:
            body["patient_id"] = patient_id
        return dict(self.request("POST", "/courses", json=body))

    def patients(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/patients"))

    def courses(self, patient_id: int | None = None) -> list[dict[str, Any]]:
        params = {"patient_id": patient_id} if patient_id is not None else None
        return list(self.request("GET", "/courses", params=params))

    def delete_patient(self, patient_id: int) -> None:
        """Delete a patient with their courses, runs and files."""
        self.request("DELETE", f"/patients/{patient_id}")

    # --------------------------------------------------------------------------- runs
    def submit(self, kind: str, **body: Any) -> dict[str, Any]:
        """Submit a run of ``kind`` (simulate, plan, absorb, trial, sensitivity, validate); the
        run as the server describes it (done when answered inline, else queued)."""
        for key in ("course", "patient", "trial"):
            if key in body and isinstance(body[key], str | Path):
                body[key] = _file(body[key])
        return dict(self.request("POST", f"/runs/{kind}", json=body))

    def simulate(
        self,
        course: str | Path | Mapping[str, Any] | int,
        *,
        draws: int = 32,
        wait: bool = True,
        **options: Any,
    ) -> dict[str, Any]:
        """Simulate a course (a path, a mapping or a stored course's id); with ``wait``, return
        when it is done (answered inline, or polled)."""
        key = "course_id" if isinstance(course, int) else "course"
        run = self.submit("simulate", **{key: course}, draws=draws, **options)
        return self.wait(run["id"]) if wait and run["status"] not in TERMINAL else run

    def run(self, run_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/runs/{run_id}"))

    def runs(self, **filters: Any) -> list[dict[str, Any]]:
        return list(self.request("GET", "/runs", params=filters or None))

    def wait(
        self, run_id: int, *, timeout: float = 3600.0, poll: float = 0.5, check: bool = True
    ) -> dict[str, Any]:
        """Poll until the run is done, failed or cancelled; with ``check``, a failed run raises
        its error (as :class:`InputFileError` for bad input, else :class:`ServiceError`)."""
        end = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in TERMINAL:
                break
            if time.monotonic() > end:
                raise TimeoutError(f"run {run_id} is still {run['status']} after {timeout:g} s")
            time.sleep(poll)
        if check and run["status"] == "failed" and run.get("error"):
            err = run["error"]
            fake = httpx.Response(int(err.get("status", 500)), json=err)
            _raise(fake)
        return run

    def events(self, run_id: int, timeout: float = 600.0) -> Iterator[dict[str, Any]]:
        """The run's progress as it happens (server-sent events), until it ends."""
        with self.http.stream(
            "GET", f"/runs/{run_id}/events", params={"timeout": timeout}, timeout=None
        ) as response:
            if not response.is_success:
                response.read()
                _raise(response)
            event = "message"
            for line in response.iter_lines():
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    yield {"event": event, **json.loads(line.split(":", 1)[1])}

    def cancel(self, run_id: int) -> dict[str, Any]:
        return dict(self.request("POST", f"/runs/{run_id}/cancel"))

    def delete_run(self, run_id: int) -> None:
        self.request("DELETE", f"/runs/{run_id}")

    # ------------------------------------------------------------------------ results
    def download(self, run_id: int, name: str, path: str | Path | None = None) -> bytes:
        """A file of a run (``result.nc``, ``report.html``, ``figures/x.png`` ...); written to
        ``path`` too when given."""
        response = self.http.get(f"/runs/{run_id}/files/{name}")
        _raise(response)
        if path is not None:
            write_bytes_atomic(response.content, path)
        return response.content

    def dataset(self, run_id: int, name: str | None = None) -> Any:
        """A run's NetCDF result as an :class:`xarray.Dataset`, loaded in memory (``result.nc``
        of a simulation, ``trial.nc``, ``sobol.nc``; by default the run's first ``.nc`` file)."""
        import xarray as xr

        if name is None:
            run = self.run(run_id)
            names = [f["name"] for f in run["files"]]
            names += [u.rsplit("/files/", 1)[1] for u in run.get("downloads", [])]
            files = [n for n in names if n.endswith(".nc")]
            if not files:
                raise ServiceError(404, f"run {run_id} has no NetCDF file")
            name = files[0]
        data = self.download(run_id, name)
        if data[:3] == b"CDF":  # NetCDF classic: read from memory
            with xr.open_dataset(io.BytesIO(data), engine="scipy") as ds:
                return ds.load()
        with tempfile.TemporaryDirectory() as tmp:  # NetCDF-4 (HDF5): through a file
            p = Path(tmp) / name.replace("/", "_")
            p.write_bytes(data)
            with xr.open_dataset(p, engine="netcdf4") as ds:
                return ds.load()

    def result(self, run_id: int) -> Any:
        """A simulation's :class:`~microneedling.engine.result.Result` (end points, sources ...)."""
        return Result(self.dataset(run_id, "result.nc"))

    def endpoints(self, run_id: int) -> Any:
        """A simulation's end points as a pandas DataFrame (the CLI's table)."""
        import pandas as pd

        return pd.DataFrame(self.request("GET", f"/runs/{run_id}/endpoints"))

    # ------------------------------------------------------------------ reference data
    def parameters(self, group: str | None = None) -> list[dict[str, Any]]:
        return list(self.request("GET", "/parameters", params={"group": group} if group else None))

    def sources(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/sources"))

    def populations(self) -> list[dict[str, Any]]:
        """The population presets and the organisation's own populations (see
        :meth:`create_population`): ``key`` (what a trial's ``population`` names), ``name``,
        ``description``, ``shipped``, ``id`` (the organisation's only), ``data``."""
        return list(self.request("GET", "/populations"))

    def create_population(self, population: str | Path | Mapping[str, Any]) -> dict[str, Any]:
        """Add a virtual population to the organisation's (a population file, TOML or JSON, in the
        format of ``data/populations/*.toml``, or a mapping; validated like the file), under its
        ``name``, which a trial's ``population`` then names. Its ``name`` must be new (not a
        preset's, nor the organisation's). The population as :meth:`populations` lists it."""
        return dict(self.request("POST", "/populations", json={"population": _file(population)}))

    def population(self, population_id: int) -> dict[str, Any]:
        """One of the organisation's populations (by ``id``), as :meth:`populations` lists it."""
        return dict(self.request("GET", f"/populations/{population_id}"))

    def delete_population(self, population_id: int) -> None:
        """Remove one of the organisation's populations (by ``id``); a trial already submitted
        keeps the population's table in its request."""
        self.request("DELETE", f"/populations/{population_id}")

    def molecules(self) -> list[dict[str, Any]]:
        """The shipped molecule library and the organisation's own molecules (see
        :meth:`create_molecule`): ``key`` (what a course's ``topical.product`` names), ``label``,
        ``mw_g_per_mol`` (g/mol), ``log_kow`` (``None`` where not defined), ``d_aq_m2_s`` (m²/s),
        ``charge`` (at pH 5.5), ``sources``, ``shipped``, and for the organisation's own ``id``
        and ``data`` (the table as stored)."""
        return list(self.request("GET", "/molecules"))

    def create_molecule(
        self, molecules: str | Path | Mapping[str, Any], key: str | None = None
    ) -> dict[str, Any]:
        """Add a topical active to the organisation's library, from a molecule file (TOML or JSON)
        or a mapping in the format of ``data/molecules.toml``: ``{key: table}``, the table with
        ``label`` and ``mw`` (g/mol), ``log_kow``, ``d_aq`` (m²/s) and ``charge``, each
        ``{value, units, source, kind}`` (``kind = "user"`` allows a free-text source). ``key``
        chooses the molecule when the file holds several (tables whose key starts with ``_`` are
        ignored, as the library's reader ignores them). The key must be new (not shipped, nor
        the organisation's); the organisation's courses and runs may then name it as a topical
        ``product``. The molecule as :meth:`molecules` lists it (``id`` for
        :meth:`delete_molecule`)."""
        tables = {k: v for k, v in _file(molecules).items() if not str(k).startswith("_")}
        if not tables:
            raise InputError("molecules", tables, "a molecule table, {key: table}")
        if key is None and len(tables) == 1:
            key = next(iter(tables))
        if key not in tables:
            allowed = "the key of a molecule in it: " + ", ".join(sorted(tables))
            raise InputError("key", MISSING if key is None else key, allowed)
        body = {"key": key, "molecule": tables[key]}
        return dict(self.request("POST", "/molecules", json=body))

    def molecule(self, molecule_id: int) -> dict[str, Any]:
        """One of the organisation's molecules (by ``id``), as :meth:`molecules` lists it, with
        its table (``data``) as it was added."""
        return dict(self.request("GET", f"/molecules/{molecule_id}"))

    def delete_molecule(self, molecule_id: int) -> None:
        """Remove one of the organisation's molecules (by ``id``). A run already made keeps the
        tables of the molecules it named; a stored course naming it is refused when submitted."""
        self.request("DELETE", f"/molecules/{molecule_id}")

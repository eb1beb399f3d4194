"""The Python client against a real server (``microneedling serve --workers 2`` in a subprocess):
sign in, store a course from a file, simulate, fetch the result as an xarray Dataset equal to the
engine's, end points, progress events, downloads, and refusals as the package's own exceptions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from microneedling.client import Client, ServiceError
from microneedling.course.model import Course
from microneedling.engine.simulate import simulate
from microneedling.errors import InputFileError
from tests.service.helpers import EXAMPLES, PASSWORD
from tests.service.live import create_admin, serve, stop

COURSE = EXAMPLES / "acne-scars-rolling-cheek.toml"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("client-server")
    create_admin(data, "me@client.example", PASSWORD, "Client clinic")
    proc, base = serve(data, None, None, "--workers", "2")
    try:
        yield base
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client.login(url, "me@client.example", PASSWORD) as c:
        yield c


def test_simulate_and_fetch_the_dataset(client: Client, tmp_path: Path) -> None:
    course = client.create_course(COURSE)
    run = client.simulate(course["id"], draws=0)
    assert run["status"] == "done" and run["course_id"] == course["id"]
    ds = client.dataset(run["id"])
    expected = simulate(Course.from_toml(COURSE), draws=0).dataset
    for name, var in expected.data_vars.items():
        np.testing.assert_array_equal(ds[name].values, var.values, err_msg=name)
    result = client.result(run["id"])
    assert result.course == Course.from_toml(COURSE)
    table = client.endpoints(run["id"])
    np.testing.assert_allclose(table["value"], result.endpoints()["value"], rtol=0)
    html = client.download(run["id"], "report.html", tmp_path / "report.html")
    assert (tmp_path / "report.html").read_bytes() == html and b"<html" in html.lower()


def test_background_run_events_and_wait(client: Client) -> None:
    run = client.simulate(COURSE, draws=2, wait=False, background=True)
    assert run["status"] in ("queued", "running")
    events = list(client.events(run["id"]))
    assert events[-1]["event"] == "end" and events[-1]["status"] == "done"
    done = client.wait(run["id"])
    assert done["status"] == "done" and done["summary"]["draws"] == 2


def test_refusals_are_the_packages_exceptions(client: Client, url: str) -> None:
    bad = Course.from_toml(COURSE).to_dict()
    bad["sessions"][0]["needle_length_mm"] = 2.9
    with pytest.raises(InputFileError) as remote:
        client.simulate(bad, draws=0)
    with pytest.raises(InputFileError) as local:
        Course.from_dict(bad, source="course")
    assert [str(p) for p in remote.value.problems] == [str(p) for p in local.value.problems]
    with pytest.raises(ServiceError) as missing:
        client.run(10**9)
    assert missing.value.status == 404
    with pytest.raises(ServiceError) as wrong:
        Client.login(url, "me@client.example", "not the password")
    assert wrong.value.status == 401
    made = client.create_token("to revoke")
    other = Client(url, made["token"])
    assert other.me()["user"]["email"] == "me@client.example"
    client.revoke_token(made["id"])
    with pytest.raises(ServiceError) as revoked:
        other.me()
    assert revoked.value.status == 401


def test_patient_plan_and_reference_data(client: Client) -> None:
    patient = client.create_patient(EXAMPLES / "patients" / "acne-scars-two-sites.toml")
    run = client.submit("plan", patient_id=patient["id"], draws=0, figures=False)
    done = client.wait(run["id"], timeout=300)
    assert done["status"] == "done" and done["summary"]["recommended"]
    assert Course.from_dict(done["summary"]["course"])  # a valid course
    healing = client.parameters("healing")
    assert healing and all(p["name"].startswith("healing.") for p in healing)
    assert {p["key"] for p in client.populations()} >= {"acne-scar-adults"}
    client.delete_patient(patient["id"])
    with pytest.raises(ServiceError):
        client.run(run["id"])

"""The Python client against a real server (``microneedling serve --workers 2`` in a subprocess):
sign in, store a course from a file, simulate, fetch the result as an xarray Dataset equal to the
engine's, end points, progress events, downloads, and refusals as the package's own exceptions; the
organisation's own molecules and populations (another organisation's answer 404)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from microneedling.client import Client, ServiceError
from microneedling.course.model import Course
from microneedling.engine.simulate import simulate
from microneedling.errors import MISSING, InputError, InputFileError
from microneedling.io import dumps_toml
from microneedling.parameters.molecules import user_molecules, using_molecules
from tests.paths import REPO
from tests.service.helpers import EXAMPLES, PASSWORD
from tests.service.live import create_admin, serve, stop
from tests.user_molecules import COPY, copy_table, write_copy, write_serum_course

COURSE = EXAMPLES / "acne-scars-rolling-cheek.toml"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("client-server")
    create_admin(data, "me@client.example", PASSWORD, "Client clinic")
    create_admin(data, "them@other.example", PASSWORD, "Another clinic")
    proc, base = serve(data, None, None, "--workers", "2")
    try:
        yield base
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[Client]:
    with Client.login(url, "me@client.example", PASSWORD) as c:
        yield c


@pytest.fixture(scope="module")
def other(url: str) -> Iterator[Client]:
    """The administrator of another organisation."""
    with Client.login(url, "them@other.example", PASSWORD) as c:
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
    assert remote.value.source == local.value.source  # the server's, not read from its message
    assert remote.value.one_line() == local.value.one_line()
    # an absent field comes back as the package's MISSING, as a local validation gives it
    no_name = Course.from_toml(COURSE).to_dict()
    del no_name["sessions"][0]["needle_length_mm"]
    with pytest.raises(InputFileError) as remote_absent:
        client.simulate(no_name, draws=0)
    with pytest.raises(InputFileError) as local_absent:
        Course.from_dict(no_name, source="course")
    assert [p.value for p in remote_absent.value.problems] == [
        p.value for p in local_absent.value.problems
    ]
    assert any(p.value is MISSING for p in remote_absent.value.problems)
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


def test_a_course_naming_the_organisations_molecule(
    client: Client, other: Client, tmp_path: Path
) -> None:
    file = write_copy(tmp_path / "house.toml")  # caffeine's table under the key COPY
    added = client.create_molecule(file)
    assert (added["key"], added["shipped"], added["data"]) == (COPY, False, copy_table())
    caffeine = next(m for m in client.molecules() if m["key"] == "caffeine")
    assert added["mw_g_per_mol"] == caffeine["mw_g_per_mol"] == 194.19
    assert client.molecule(added["id"]) == added
    assert {m["key"] for m in client.molecules()} >= {COPY, "caffeine"}
    assert COPY not in {m["key"] for m in other.molecules()}
    # a course naming it: stored, simulated, its dataset equal to the engine's with the file
    course_file = write_serum_course(tmp_path / "course.toml", COPY)
    course = client.create_course(course_file)
    run = client.simulate(course["id"], draws=0)
    assert run["status"] == "done" and run["request"]["molecules"] == {COPY: copy_table()}
    ds = client.dataset(run["id"])
    with using_molecules(user_molecules(file)):
        expected = simulate(Course.from_toml(course_file), draws=0).dataset
    for name, var in expected.data_vars.items():
        np.testing.assert_array_equal(ds[name].values, var.values, err_msg=name)
    absorbed = client.endpoints(run["id"]).query("variable == 'absorbed_amount'")["value"]
    assert len(absorbed) and (absorbed > 0).all()
    # another organisation: the product is unknown to it, the molecule not found
    with pytest.raises(InputFileError) as unknown:
        other.simulate(course_file, draws=0)
    problem = unknown.value.problems[0]
    assert problem.field.endswith("sessions[0].topical.product") and problem.value == COPY
    with pytest.raises(ServiceError) as foreign:
        other.delete_molecule(added["id"])
    assert foreign.value.status == 404
    with pytest.raises(ServiceError) as unseen:
        other.molecule(added["id"])
    assert unseen.value.status == 404
    # deleted: a stored course naming it is refused when submitted; the run made keeps its data
    client.delete_molecule(added["id"])
    assert COPY not in {m["key"] for m in client.molecules()}
    with pytest.raises(ServiceError) as deleted:
        client.molecule(added["id"])
    assert deleted.value.status == 404
    with pytest.raises(InputFileError) as gone:
        client.simulate(course["id"], draws=0)
    assert gone.value.problems[0].value == COPY
    np.testing.assert_array_equal(client.dataset(run["id"])["time"].values, ds["time"].values)
    client.request("DELETE", f"/courses/{course['id']}")


def test_molecule_refusals(client: Client, tmp_path: Path) -> None:
    table = copy_table()
    table["mw"] = {**table["mw"], "value": -5.0}
    with pytest.raises(InputFileError) as bad:
        client.create_molecule({"house_light": table})
    (problem,) = bad.value.problems  # the field inside the table, its value, what is allowed
    assert (problem.field, problem.value, problem.allowed) == (
        "molecule.mw.value",
        -5.0,
        "a positive number",
    )
    with pytest.raises(InputFileError) as key:
        client.create_molecule({"House Light": copy_table()})
    assert [(p.field, p.value) for p in key.value.problems] == [("key", "House Light")]
    assert "lower-case letters" in key.value.problems[0].allowed
    with pytest.raises(InputFileError) as shipped:
        client.create_molecule({"caffeine": copy_table()})
    assert [p.field for p in shipped.value.problems] == ["key"]
    assert "already in the shipped library" in shipped.value.problems[0].allowed
    # a file of two molecules: ``key`` chooses one (refused locally without it)
    two = tmp_path / "two.json"
    two.write_text(json.dumps({"house_a": copy_table(), "house_b": copy_table()}), "utf-8")
    with pytest.raises(InputError) as which:
        client.create_molecule(two)
    assert which.value.field == "key" and "house_a, house_b" in which.value.allowed
    made = client.create_molecule(two, key="house_b")
    assert made["key"] == "house_b"
    with pytest.raises(InputFileError) as again:
        client.create_molecule(two, key="house_b")
    assert again.value.problems[0].allowed == "an identifier your organisation has not used yet"
    client.delete_molecule(made["id"])
    with pytest.raises(ServiceError) as deleted:
        client.delete_molecule(made["id"])
    assert deleted.value.status == 404


def test_populations(client: Client, other: Client, tmp_path: Path) -> None:
    preset = REPO / "src" / "microneedling" / "data" / "populations" / "photoaging-adults.toml"
    data = tomllib.loads(preset.read_text(encoding="utf-8"))
    data["name"] = "our cohort"
    file = tmp_path / "cohort.toml"
    file.write_text(dumps_toml(data), encoding="utf-8")
    made = client.create_population(file)
    assert (made["key"], made["name"], made["shipped"]) == ("our cohort", "our cohort", False)
    assert client.population(made["id"]) == made
    assert made in client.populations()
    assert "our cohort" not in {p["key"] for p in other.populations()}
    for call in (other.population, other.delete_population):
        with pytest.raises(ServiceError) as foreign:
            call(made["id"])
        assert foreign.value.status == 404
    with pytest.raises(InputFileError) as twice:
        client.create_population(data)
    assert [(p.field, p.value) for p in twice.value.problems] == [("population.name", "our cohort")]
    children = {**data, "name": "children", "age": {"distribution": "normal", "mean": 10.0}}
    with pytest.raises(InputFileError) as bad:
        client.create_population(children)
    assert bad.value.problems[0].field.startswith("population.age")
    client.delete_population(made["id"])
    with pytest.raises(ServiceError) as gone:
        client.population(made["id"])
    assert gone.value.status == 404


def test_a_user_changes_their_password(client: Client, url: str) -> None:
    email = "colleague@client.example"
    client.request("POST", "/users", json={"email": email, "password": PASSWORD})
    new = "another long pass phrase"
    with Client.login(url, email, PASSWORD) as colleague:
        with pytest.raises(InputFileError) as wrong:
            colleague.change_password("not my password at all", new)
        assert [p.field for p in wrong.value.problems] == ["current_password"]
        colleague.change_password(PASSWORD, new)
        assert colleague.me()["user"]["email"] == email  # its token stays valid
    with pytest.raises(ServiceError) as old:
        Client.login(url, email, PASSWORD)
    assert old.value.status == 401
    with Client.login(url, email, new) as again:
        assert again.me()["user"]["email"] == email

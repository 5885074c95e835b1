"""The conventions of the tree, checked (in the spirit of Home Assistant's hassfest).

Each check is a function returning its problems, one line each naming the file and the fix, so
it can be run on this tree and, in the ``test_check_catches_*`` tests, on a small broken tree in
``tmp_path`` (a check that finds nothing there would pass on anything).

- a driver is a folder ``drivers/<name>/`` with ``driver.py``: its name is written once, as
  ``NAME`` in its ``__init__.py``, and the folder, the registry key, the ``[drivers.<name>]``
  section of its ``sample.toml`` and the name its driver object reports all equal it; the
  driver object declares ``edge`` (an :class:`gateway.driver.Edge` when it has routes);
- every driver has a ``README.md`` with the level-2 sections of :data:`README_SECTIONS`, a
  ``sample.toml`` the config loader accepts (as ``posgw check-config`` does), a compliance
  adapter (``tests/drivers/<name>/test_compliance.py`` subclassing one of the suites with an
  adapter of that name) and a simulator package ``simulators/registers/<name>/`` that
  ``posgw sim`` lists;
- drivers import only the gateway modules ``gateway.PUBLIC_FOR_DRIVERS`` declares;
- every module in ``gateway/`` and ``drivers/`` (but ``__init__.py`` and the generated
  ``gateway/core_pb/``) has its mirror test module ``tests/<same folder>/test_<module>.py``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

import gateway
from gateway.commands.sim import SIMULATORS
from gateway.config import load_config
from gateway.driver import REGISTRY, SHAPES, Edge, driver_info
from tests.drivers.compliance import ComplianceSuite
from tests.drivers.compliance_device import DeviceComplianceSuite
from tests.drivers.compliance_poll import PollComplianceSuite
from tests.drivers.fake_context import FakeContext

ROOT = Path(__file__).resolve().parents[1]

# The level-2 sections of every drivers/<name>/README.md, in this order (see drivers/README.md).
README_SECTIONS = (
    "What the till must do",
    "Auth",
    "Idempotency key",
    "Limits and errors",
    "Sources and quirks",
    "Configuration",
)
SUITES = (ComplianceSuite, PollComplianceSuite, DeviceComplianceSuite)
MIRROR_EXEMPT = ("__init__.py",)
# Modules whose mirror test module is still to be written (issue 10). Only ever shrinks: an entry
# that has its mirror now, or names no module, fails test_pending_mirrors_are_still_pending.
PENDING_MIRRORS: frozenset[str] = frozenset()


def driver_names(root: Path = ROOT) -> list[str]:
    """The driver folders: packages under drivers/ with a driver.py."""
    return sorted(p.parent.name for p in (root / "drivers").glob("*/driver.py")
                  if (p.parent / "__init__.py").is_file())


def written_name(root: Path, name: str) -> str | None:
    """The ``NAME = "..."`` assigned in drivers/<name>/__init__.py (read, not imported)."""
    tree = ast.parse((root / "drivers" / name / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == ["NAME"]
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    return None


# ------------------------------------------------------------------ the checks


def check_names(root: Path, registry: dict[str, str]) -> list[str]:
    problems = []
    folders = driver_names(root)
    for name in folders:
        init = f"drivers/{name}/__init__.py"
        written = written_name(root, name)
        if written != name:
            problems.append(f"{init}: NAME is {written!r}, the folder is {name!r}: write NAME = {name!r}")
        if registry.get(name) != f"drivers.{name}.driver:create":
            problems.append(f"drivers/{name}/driver.py: registry has {registry.get(name)!r} for {name!r}: "
                            "define create(options) in driver.py (gateway.driver.discover finds it)")
        sample = root / "drivers" / name / "sample.toml"
        if sample.is_file():
            sections = re.findall(r"^\[drivers\.([A-Za-z0-9_]+)\]", sample.read_text(encoding="utf-8"), re.M)
            if sections != [name]:
                problems.append(f"drivers/{name}/sample.toml: sections {sections}: "
                                f"write exactly one [drivers.{name}]")
    for name in sorted(set(registry) - set(folders)):
        problems.append(f"gateway.driver.REGISTRY: {name!r} has no folder drivers/{name}/ with driver.py")
    return problems


def check_files(root: Path, simulators: dict[str, tuple[str, str]]) -> list[str]:
    problems = []
    for name in driver_names(root):
        folder = root / "drivers" / name
        for file in ("README.md", "sample.toml", "config.py"):
            if not (folder / file).is_file():
                problems.append(f"drivers/{name}/{file}: missing: add it (see drivers/README.md)")
        if not (root / "tests" / "drivers" / name / "test_compliance.py").is_file():
            problems.append(f"tests/drivers/{name}/test_compliance.py: missing: subclass a compliance suite "
                            "(tests/drivers/compliance*.py) with an adapter named " + repr(name))
        sim = root / "simulators" / "registers" / name
        if not ((sim / "__init__.py").is_file() and (sim / "cli.py").is_file()):
            problems.append(f"simulators/registers/{name}/: missing package with cli.py: "
                            "add the till simulator")
        elif simulators.get(name, ("",))[0] != f"simulators.registers.{name}.cli":
            problems.append(f"simulators/registers/{name}/cli.py: not listed by posgw sim "
                            f"({simulators.get(name)!r}): give cli.py a docstring, add_arguments and run")
    return problems


def readme_sections(text: str) -> list[str]:
    return [m.strip() for m in re.findall(r"^## (.+)$", text, re.M)]


def check_readmes(root: Path) -> list[str]:
    problems = []
    for name in driver_names(root):
        path = root / "drivers" / name / "README.md"
        if not path.is_file():
            continue  # check_files reports it
        found = readme_sections(path.read_text(encoding="utf-8"))
        if tuple(found) != README_SECTIONS:
            problems.append(f"drivers/{name}/README.md: level-2 sections {found}: use exactly "
                            f"{list(README_SECTIONS)} in this order (### for anything else)")
    return problems


def imported_modules(path: Path) -> list[str]:
    """Absolute modules ``path`` imports; ``from gateway import x`` counts as ``gateway.x``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "gateway":
                out += [f"gateway.{alias.name}" for alias in node.names]
            else:
                out.append(node.module)
    return out


def check_driver_imports(root: Path, public: tuple[str, ...]) -> list[str]:
    problems = []
    for path in sorted((root / "drivers").rglob("*.py")):
        for module in imported_modules(path):
            if module.split(".")[0] != "gateway":
                continue
            if not any(module == p or module.startswith(p + ".") for p in public):
                problems.append(f"{path.relative_to(root)}: imports {module}, not public for drivers: "
                                "use one of gateway.PUBLIC_FOR_DRIVERS, or declare it there "
                                "(gateway/__init__.py)")
    return problems


def check_mirrors(root: Path, pending: frozenset[str] = frozenset()) -> list[str]:
    problems = []
    for top in ("gateway", "drivers"):
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            skip = path.name in MIRROR_EXEMPT or rel.as_posix() in pending
            if skip or rel.parts[:2] == ("gateway", "core_pb"):
                continue
            mirror = root / "tests" / rel.parent / f"test_{path.stem}.py"
            if not mirror.is_file():
                problems.append(f"{rel}: no mirror test module: add {mirror.relative_to(root)}")
    return problems


# ------------------------------------------------------------------ this tree


def test_drivers_exist() -> None:
    assert driver_names(), "no driver folder found under drivers/: the checks below would pass vacuously"


def test_name_is_written_once() -> None:
    problems = check_names(ROOT, REGISTRY)
    assert not problems, "\n".join(problems)


def test_every_driver_has_its_files_adapter_and_simulator() -> None:
    problems = check_files(ROOT, SIMULATORS)
    assert not problems, "\n".join(problems)


def test_every_driver_readme_has_the_same_sections() -> None:
    problems = check_readmes(ROOT)
    assert not problems, "\n".join(problems)


def test_drivers_import_only_public_gateway_modules() -> None:
    problems = check_driver_imports(ROOT, gateway.PUBLIC_FOR_DRIVERS)
    assert not problems, "\n".join(problems)


def test_public_modules_exist() -> None:
    missing = [m for m in gateway.PUBLIC_FOR_DRIVERS if importlib.util.find_spec(m) is None]
    assert not missing, f"gateway/__init__.py: PUBLIC_FOR_DRIVERS names {missing}: no such module, remove it"


def test_every_module_has_a_mirror_test() -> None:
    problems = check_mirrors(ROOT, PENDING_MIRRORS)
    assert not problems, "\n".join(problems)


def test_pending_mirrors_are_still_pending() -> None:
    stale = sorted(p for p in PENDING_MIRRORS if not check_mirrors_of(ROOT, p))
    assert not stale, f"tests/test_conventions.py: drop {stale} from PENDING_MIRRORS (mirror written)"


def check_mirrors_of(root: Path, rel: str) -> bool:
    """True when module ``rel`` exists and still lacks its mirror test module."""
    path = root / rel
    mirror = root / "tests" / path.parent.relative_to(root) / f"test_{path.stem}.py"
    return path.is_file() and not mirror.is_file()


@pytest.mark.parametrize("name", driver_names())
def test_sample_loads_and_its_driver_reports_the_name(name: str) -> None:
    sample = ROOT / "drivers" / name / "sample.toml"
    config = load_config(sample, environ={})  # raises ConfigErrors naming every problem
    assert config.enabled_drivers() == [name], f"drivers/{name}/sample.toml: set enabled = true"
    module = importlib.import_module(f"drivers.{name}.driver")
    driver = module.create(config.driver_options(name))
    assert driver.name == name, f"drivers/{name}/driver.py: the driver reports {driver.name!r}: use NAME"
    where = f"drivers/{name}/driver.py"
    assert hasattr(driver, "edge"), f"{where}: declare edge (an Edge, or None without routes)"
    info = driver_info(name)
    assert info.name == name and info.title, f"drivers/{name}/__init__.py: set NAME and TITLE"
    assert info.shape in SHAPES and info.delivery, f"drivers/{name}/__init__.py: set SHAPE and DELIVERY"
    routes = driver.routes(FakeContext(name))
    assert bool(routes) == (info.shape == "push"), f"{where}: push drivers have routes, poll/device none"
    if routes:
        assert isinstance(driver.edge, Edge), f"{where}: it has routes, so edge must be an Edge"
    else:
        assert driver.edge is None, f"drivers/{name}/driver.py: no routes, so edge = None"


@pytest.mark.parametrize("name", driver_names())
def test_compliance_adapter_runs_a_suite_for_the_driver(name: str) -> None:
    module = importlib.import_module(f"tests.drivers.{name}.test_compliance")
    suites = [cls for _, cls in inspect.getmembers(module, inspect.isclass)
              if issubclass(cls, SUITES) and cls not in SUITES and cls.__name__.startswith("Test")]
    where = f"tests/drivers/{name}/test_compliance.py"
    assert suites, f"{where}: no Test... class subclassing one of {[s.__name__ for s in SUITES]}"
    names = {cls.adapter.name for cls in suites}
    assert names == {name}, f"{where}: adapters named {names}: set the adapter's name = {name!r}"


# ------------------------------------------------------------------ the checks catch what they should


def _tree(root: Path) -> Path:
    """A small tree with one driver 'good' and one 'bad' that breaks every convention."""
    for name in ("good", "bad"):
        folder = root / "drivers" / name
        folder.mkdir(parents=True)
        (folder / "driver.py").write_text("from gateway.pipeline import Pipeline\n" if name == "bad" else
                                          "from gateway import http_edge\nfrom gateway.driver import Edge\n")
        (folder / "__init__.py").write_text(f'NAME = "{"good" if name == "good" else "other"}"\n')
    good = root / "drivers" / "good"
    (good / "README.md").write_text("".join(f"## {s}\n\ntext\n\n" for s in README_SECTIONS))
    (good / "sample.toml").write_text("[drivers.good]\nenabled = true\n")
    (good / "config.py").write_text("")
    (root / "drivers" / "bad" / "README.md").write_text("## What the till must do\n## Auth\n")
    (root / "tests" / "drivers" / "good").mkdir(parents=True)
    (root / "tests" / "drivers" / "good" / "test_compliance.py").write_text("")
    (root / "tests" / "drivers" / "good" / "test_driver.py").write_text("")
    (root / "simulators" / "registers" / "good").mkdir(parents=True)
    for file in ("__init__.py", "cli.py"):
        (root / "simulators" / "registers" / "good" / file).write_text("")
    (root / "gateway").mkdir()
    (root / "gateway" / "lonely.py").write_text("")
    (root / "gateway" / "core_pb").mkdir()
    (root / "gateway" / "core_pb" / "generated.py").write_text("")
    return root


def test_check_catches_names(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    registry = {"good": "drivers.good.driver:create", "bad": "drivers.bad.driver:create",
                "ghost": "drivers.ghost.driver:create"}
    problems = check_names(root, registry)
    assert len(problems) == 2, problems
    assert problems[0].startswith("drivers/bad/__init__.py: NAME is 'other'")
    assert problems[1].startswith("gateway.driver.REGISTRY: 'ghost' has no folder")


def test_check_catches_missing_files(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    sims = {"good": ("simulators.registers.good.cli", "")}
    problems = check_files(root, sims)
    assert [p.split(":")[0] for p in problems] == [
        "drivers/bad/sample.toml", "drivers/bad/config.py", "tests/drivers/bad/test_compliance.py",
        "simulators/registers/bad/"], problems
    assert check_files(root, {})[-1].startswith("simulators/registers/good/cli.py: not listed by posgw sim")


def test_check_catches_readme_sections(tmp_path: Path) -> None:
    problems = check_readmes(_tree(tmp_path))
    assert len(problems) == 1 and problems[0].startswith("drivers/bad/README.md: level-2 sections"), problems


def test_check_catches_private_imports(tmp_path: Path) -> None:
    problems = check_driver_imports(_tree(tmp_path), ("gateway.driver", "gateway.http_edge"))
    assert problems == [
        "drivers/bad/driver.py: imports gateway.pipeline, not public for drivers: use one of "
        "gateway.PUBLIC_FOR_DRIVERS, or declare it there (gateway/__init__.py)"]


def test_check_catches_missing_mirrors(tmp_path: Path) -> None:
    problems = check_mirrors(_tree(tmp_path))
    assert problems == [
        "gateway/lonely.py: no mirror test module: add tests/gateway/test_lonely.py",
        "drivers/bad/driver.py: no mirror test module: add tests/drivers/bad/test_driver.py",
        "drivers/good/config.py: no mirror test module: add tests/drivers/good/test_config.py",
    ]

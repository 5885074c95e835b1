"""The WSDL: loads in zeep (strict), is compatible with Manzana's real one, and is byte-stable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import zeep
from lxml import etree  # type: ignore[import-untyped]
from zeep.xsd import ComplexType, Element

from drivers.onec import wsdl
from tests.conftest import VENDOR as VENDOR_ROOT
from tests.conftest import require_vendor
from tests.drivers.onec.envelopes import OPTIONS

GOLDEN = Path(__file__).parent / "golden"
VENDOR = VENDOR_ROOT / "manzana"
URL = str(OPTIONS["public_url"])
TNS = "{http://loyalty.manzanagroup.ru/loyalty.xsd}"


def golden(name: str, data: bytes) -> None:
    """``data`` equals the golden file ``name`` (POSGW_UPDATE_GOLDEN=1 rewrites it from our output)."""
    path = GOLDEN / name
    if os.environ.get("POSGW_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    assert path.read_bytes() == data, f"{path} differs: a WS-reference imported from it would break"


def client(path: Path) -> zeep.Client:
    return zeep.Client(str(path), settings=zeep.Settings(strict=True, xml_huge_tree=False))


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> zeep.Client:
    path = tmp_path_factory.mktemp("wsdl") / "ours.wsdl"
    path.write_bytes(wsdl.render(URL))
    return client(path)


def test_the_wsdl_is_byte_stable() -> None:
    golden("POSProcessing.wsdl", wsdl.render(URL))


def test_soap_address_is_the_configured_url_escaped() -> None:
    doc = etree.fromstring(wsdl.render("https://gw.example/v1/onec/POSProcessing.asmx?a=1&b=2"))
    [address] = doc.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert address.get("location") == "https://gw.example/v1/onec/POSProcessing.asmx?a=1&b=2"


def test_zeep_builds_the_one_operation(ours: zeep.Client) -> None:
    [service] = ours.wsdl.services.values()
    assert service.name == "POSProcessing" and list(service.ports) == ["POSProcessingSoap"]
    port = service.ports["POSProcessingSoap"]
    assert port.binding_options["address"] == URL
    op = port.binding._operations["ProcessRequest"]
    assert (
        op.soapaction == "http://loyalty.manzanagroup.ru/loyalty.xsd/ProcessRequest"
        and op.style == "document"
    )


def _walk(node: Any, path: str, out: list[tuple[str, str, int, Any]], depth: int = 0) -> None:
    """Every element and attribute under ``node`` as (path, type name, minOccurs, maxOccurs), in order."""
    if isinstance(node, Element):
        t, where = node.type, f"{path}/{node.name}"
        out.append((where, t.qname.localname if t.qname else "(anonymous)", node.min_occurs, node.max_occurs))
        if isinstance(t, ComplexType) and depth < 10:
            for _, child in t.elements_nested:
                _walk(child, where, out, depth + 1)
            out.extend((f"{where}/@{n}", a.type.qname.localname, 0, 1) for n, a in t.attributes)
    elif isinstance(node, list):  # a sequence or choice indicator holds its elements
        for child in node:
            _walk(child, path, out, depth)


def shape(c: zeep.Client, element: str) -> list[tuple[str, str, int, Any]]:
    out: list[tuple[str, str, int, Any]] = []
    _walk(c.get_element(TNS + element), "", out)
    return out


def test_compatible_with_manzanas_service_description(ours: zeep.Client) -> None:
    theirs_client = client(require_vendor(VENDOR / "POSProcessing.wsdl"))
    mine_service = ours.wsdl.services["POSProcessing"]
    their_service = theirs_client.wsdl.services["POSProcessing"]
    assert set(mine_service.ports) <= set(their_service.ports)
    mine_op = mine_service.ports["POSProcessingSoap"].binding._operations["ProcessRequest"]
    their_op = their_service.ports["POSProcessingSoap"].binding._operations["ProcessRequest"]
    assert (mine_op.soapaction, mine_op.style) == (their_op.soapaction, their_op.style)
    for part in ("input", "output"):
        mine_el, their_el = getattr(mine_op, part).body, getattr(their_op, part).body
        assert mine_el.qname == their_el.qname, part
        mine, theirs = shape(ours, mine_el.qname.localname), shape(theirs_client, their_el.qname.localname)
        missing = [x for x in mine if x not in theirs]
        assert not missing, f"{part}: not in Manzana's description (name, type, bounds): {missing}"
        order = [theirs.index(x) for x in mine]
        assert order == sorted(order), f"{part}: elements in another order than Manzana's"
        deep = {
            "input": "/ProcessRequest/request/ChequeRequest/Item/SummDiscounted",
            "output": "/ProcessRequestResponse/ProcessRequestResult/ChequeResponse/Item/WriteoffBonus",
        }[part]
        assert deep in [x[0] for x in mine], mine  # the walk reached the nested types


def enumerations(document: bytes) -> dict[str, list[str]]:
    xs = "{http://www.w3.org/2001/XMLSchema}"
    root = etree.fromstring(document)
    return {
        t.get("name"): [e.get("value") for e in t.iter(xs + "enumeration")]
        for t in root.iter(xs + "simpleType")
    }


def test_the_enumerations_are_manzanas() -> None:
    theirs = require_vendor(VENDOR / "POSProcessing.wsdl").read_bytes()
    assert (
        enumerations(wsdl.render(URL))
        == enumerations(theirs)
        == {"ChequeType": ["Fiscal", "Soft"], "OperationType": ["Sale", "Return", "Rollback"]}
    )

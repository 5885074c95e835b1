"""Payload readers for XML (SOAP) bodies, in the style of :mod:`gateway.fields`.

- :func:`parse`: bytes -> the root element, with a hardened lxml parser: no DTD at all (a
  document type declaration is refused, so no entity can be declared: no billion laughs, no
  external entity), no network, no entity substitution, comments and processing instructions
  dropped; the body, the nesting depth and the element count are bounded;
- :func:`child` / :func:`children`: elements by local name (namespaces ignored: SOAP and 1C
  prefixes vary); :func:`text` / :func:`child_text`: element text, checked as
  :func:`gateway.fields.text` checks a string; :func:`decimal` / :func:`kopecks` / :func:`milli`:
  numbers from element text; :func:`attribute`.

Invariants: pure; malformed or hostile input raises :class:`gateway.errors.BadInput` whose field
is the element path (``Envelope/Body/Sale/Lines/Line[1]/Price``, an attribute as ``…/@name``),
and nothing else escapes; values are read, never evaluated.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any, Literal, TypeAlias, overload

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type information

from gateway import fields
from gateway.errors import BadInput

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_ELEMENTS = 20_000

Element: TypeAlias = Any  # an lxml element (etree._Element); untyped, see the import

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False,
    remove_comments=True, remove_pis=True,
)


def parse(body: bytes, where: str = "body", *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
          max_elements: int = MAX_ELEMENTS) -> Element:
    """An XML document -> its root element; BadInput(``where``) when too large, malformed, carrying
    a document type declaration (DTD, entities), nested deeper than ``max_depth`` or holding more
    than ``max_elements`` elements."""
    if len(body) > max_bytes:
        raise BadInput(f"larger than {max_bytes} bytes", where)
    try:
        tree = etree.ElementTree(etree.fromstring(body, _PARSER))
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise BadInput(f"malformed XML: {str(exc)[:120]}", where) from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise BadInput("a document type declaration (DTD, entities) is not accepted", where)
    root = tree.getroot()
    # the three walks run in libxml2 (C), not element by element in Python: this parser is on every
    # SOAP request's path
    if _deeper_than(max_depth)(root):
        raise BadInput(f"XML nested deeper than {max_depth} levels", where)
    if int(root.xpath("count(//*)")) > max_elements:
        raise BadInput(f"more than {max_elements} elements", where)
    if next(root.iter(etree.Entity), None) is not None:  # an entity reference left unexpanded
        raise BadInput("entity references are not accepted", where)
    return root


@functools.cache
def _deeper_than(depth: int) -> Any:
    """An XPath that is true when some element lies deeper than ``depth`` (the root is at 1)."""
    return etree.XPath("boolean(/" + "/".join(["*"] * (depth + 1)) + ")")


def name(element: Element) -> str:
    """An element's local name (without its namespace)."""
    return str(etree.QName(element).localname)


def children(element: Element, tag: str) -> list[Element]:
    """The child elements with local name ``tag``, in document order."""
    return [c for c in element if isinstance(c.tag, str) and etree.QName(c).localname == tag]


def namespace(element: Element) -> str:
    """An element's namespace URI ("" when it has none): the readers ignore namespaces, a SOAP
    service checks its envelope's and its operation's with this."""
    return str(etree.QName(element).namespace or "")


@overload
def child(element: Element, tag: str, where: str, *, required: Literal[True] = True) -> Element: ...


@overload
def child(element: Element, tag: str, where: str, *, required: bool) -> Element | None: ...


def child(element: Element, tag: str, where: str, *, required: bool = True) -> Element | None:
    """The one child named ``tag`` (local name) of the element at ``where``; None when absent and
    not ``required``; more than one is refused."""
    found = children(element, tag)
    if len(found) > 1:
        raise BadInput("must appear once", f"{where}/{tag}")
    if not found:
        if required:
            raise BadInput("is required", f"{where}/{tag}")
        return None
    return found[0]


def text(element: Element | None, where: str, *, required: bool = False, limit: int = fields.MAX_TEXT) -> str:
    """An element's text, surrounding white space stripped; an element with child elements is
    refused; None (absent) and empty read as "" (or "is required")."""
    if element is None:
        return fields.text(None, where, required=required)
    if any(isinstance(c.tag, str) for c in element):
        raise BadInput("must hold text, not elements", where)
    return fields.text((element.text or "").strip(), where, required=required, limit=limit)


def child_text(element: Element, tag: str, where: str, *, required: bool = False,
               limit: int = fields.MAX_TEXT) -> str:
    """The text of the child ``tag`` of the element at ``where`` (path ``where/tag``)."""
    return text(child(element, tag, where, required=required), f"{where}/{tag}", required=required,
                limit=limit)


def decimal(element: Element | None, where: str) -> Decimal:
    """A decimal number from an element's text (as :func:`gateway.fields.decimal`)."""
    return fields.decimal(text(element, where, required=True, limit=64), where)


def kopecks(element: Element | None, where: str, *, default: int | None = None, signed: bool = True) -> int:
    """Rubles in an element's text -> integer kopecks, half-up; an absent or empty element reads as
    ``default`` when one is given."""
    raw = text(element, where, required=default is None, limit=64)
    return fields.kopecks(raw or None, where, default=default, signed=signed)


def milli(element: Element | None, where: str, *, signed: bool = True) -> int:
    """A quantity in an element's text -> integer thousandths, half-up."""
    return fields.milli(text(element, where, required=True, limit=64), where, signed=signed)


def attribute(element: Element, attr: str, where: str, *, required: bool = False,
              limit: int = fields.MAX_TEXT) -> str:
    """An attribute by local name (``where/@attr``), checked as :func:`gateway.fields.text`."""
    value = None
    for key, raw in element.attrib.items():
        if etree.QName(key).localname == attr:
            value = raw
            break
    return fields.text(value, f"{where}/@{attr}", required=required, limit=limit)

"""The fake 1C publication's exchange plan (the onec_pull simulator): registrations dropped only up to
AckNo, redelivery of what was sent but not acknowledged, restore from a backup, the CLI's usage error."""

from __future__ import annotations

import argparse

from lxml import etree  # type: ignore[import-untyped]

from simulators.registers.onec_pull import FakePublication, cli
from simulators.registers.onec_pull.publication import NS


def ids(pub: FakePublication, ack: int, count: int = 2) -> tuple[int, list[str]]:
    body = etree.fromstring(pub.answer(ack, count).body)
    number = int(body.find(f".//{{{NS}}}BatchNo").text)
    return number, [e.text for e in body.iter(f"{{{NS}}}Id")]


def test_the_exchange_plan() -> None:
    pub = FakePublication()
    pub.publish(*({"Id": f"d{i}", "POS": "P"} for i in range(1, 6)))
    assert ids(pub, 0) == (1, ["d1", "d2"])
    assert ids(pub, 0) == (2, ["d1", "d2"])  # not acknowledged: sent again under a new number
    assert ids(pub, 2) == (3, ["d3", "d4"]) and pub.unread("3") == ["d5"]
    assert ids(pub, 99) == (4, ["d5"])  # an AckNo above the last number acknowledges only what was sent
    assert ids(pub, 4) == (4, []) and pub.unread("4") == []
    pub.restore(2)  # the backup knew batches 1 and 2 only: d3..d5 are registered again, numbering from 2
    assert ids(pub, 4) == (3, ["d3", "d4"])


def test_cli_needs_a_password() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--receipts", "1"])) == 2

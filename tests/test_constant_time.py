"""Secrets are compared in constant time: no ``==`` / ``!=`` / ``in`` between a value named like a
token, key, secret, signature or password in gateway/ and drivers/ (use hmac.compare_digest or
gateway.http_edge.token_matches). A name that is not a secret goes in ALLOWED with the reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRETISH = re.compile(r"(token|secret|signature|password|passwd|api_key|admin_key|digest|hmac)", re.I)
ALLOWED = {  # (file, name): why it is not an authentication check
    ("*", "TOKEN_KEY"): "the name of the calc token's field in a vendor receipt, not the token",
    ("gateway/commands/moysklad.py", "token"): "de-duplicates the stored tokens when one is added",
    ("drivers/moysklad/driver.py", "digest"): "a document's content digest for de-duplication",
}


def names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.Call):
        return names(node.func) if isinstance(node.func, ast.Attribute | ast.Name) else []
    return []


def test_no_plain_comparison_of_secrets() -> None:
    found: list[str] = []
    files = [*ROOT.glob("gateway/**/*.py"), *ROOT.glob("drivers/**/*.py")]
    assert len(files) > 50
    for path in files:
        if "core_pb" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            if not any(isinstance(op, ast.Eq | ast.NotEq) for op in node.ops):
                continue
            for side in [node.left, *node.comparators]:
                for name in names(side):
                    where = str(path.relative_to(ROOT))
                    if not SECRETISH.search(name) or name.endswith("_file"):
                        continue
                    if (where, name) not in ALLOWED and ("*", name) not in ALLOWED:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not found, "compare secrets with hmac.compare_digest:\n" + "\n".join(found)

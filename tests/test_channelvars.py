"""fsapps.channelvars is the one place fsapps' channel-variable names are spelled: the dialplan
XML uses only declared names, and no fsapps module spells a declared name itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from fsapps import channelvars

ROOT = Path(__file__).resolve().parent.parent
DIALPLAN = sorted((ROOT / "dialplan").glob("*.xml"))
DECLARED = {value for name, value in vars(channelvars).items()
            if name.isupper() and isinstance(value, str)}
# A variable the XML sets (set / export NAME=...) or reads (${NAME}).
_SET = re.compile(r'application="(?:set|export)"\s+data="([A-Za-z0-9_\-]+)=')
_READ = re.compile(r"\$\{([A-Za-z0-9_\-]+)\}")
# Names the dialplan sets for an app, or the relay contract it implements: each is used there.
FOR_THE_DIALPLAN = (channelvars.CALLER_ID_VAR, channelvars.RING_TIMEOUT_VAR,
                    channelvars.CTI_REQUEST_VARS_VAR, channelvars.DIALLED_VAR,
                    channelvars.RELAY_PREFIX, channelvars.RELAY_DOMAIN_HEADER,
                    channelvars.RING_TIMEOUT_HEADER)


def _dialplan_variables() -> set[str]:
    found: set[str] = set()
    for path in DIALPLAN:
        text = path.read_text()
        found.update(_SET.findall(text))
        found.update(_READ.findall(text))
    return found


def test_every_fsapps_variable_of_the_dialplan_is_declared() -> None:
    ours = {v for v in _dialplan_variables()
            if v.startswith("fsapps_") or v.lower().startswith("sip_h_x-fsapps-")}
    assert ours  # the XML was read
    assert sorted(ours - DECLARED) == []


def test_the_names_meant_for_the_dialplan_appear_in_it() -> None:
    text = "\n".join(path.read_text() for path in DIALPLAN)
    assert [name for name in FOR_THE_DIALPLAN if name not in text] == []


def _strings_outside_docstrings(tree: ast.AST) -> list[str]:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_no_module_spells_a_declared_name() -> None:
    token = re.compile(r"(?:variable_)?(fsapps_[a-z_]+|sip_h_X-FSAPPS-[A-Za-z\-]+)")
    spelled = []
    for path in sorted((ROOT / "fsapps").rglob("*.py")):
        if path.name == "channelvars.py":
            continue
        for text in _strings_outside_docstrings(ast.parse(path.read_text())):
            for name in token.findall(text):
                if name in DECLARED or name.rstrip("_") + "_" in DECLARED:
                    spelled.append(f"{path.relative_to(ROOT)}: {name}")
    assert spelled == []


def test_every_declared_name_is_used_by_fsapps_or_the_dialplan() -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "fsapps").rglob("*.py")
                     if p.name != "channelvars.py")
    xml = "\n".join(path.read_text() for path in DIALPLAN)
    unused = [name for name, value in vars(channelvars).items()
              if name.isupper() and isinstance(value, str)
              and not re.search(rf"\b{name}\b", code) and value not in xml]
    assert unused == []

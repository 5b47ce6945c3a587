#!/usr/bin/env python3
"""Fails when modules of a crate depend on each other in a cycle.

Usage: tests/module-cycles.py [CRATE ...]   (default: every crate)

For every crate under crates/, each module (a file or folder under src/,
and each child of a folder module) is a node; a path `crate::a::...`,
`super::b` or `use crate::{a, b}` in its files is an edge to the module
named. Items the crate root re-exports (`pub use shared::Shared;`) count
as their module. Prints each cycle found and exits 1 if there is one.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

CRATE_PATH = re.compile(r"\bcrate::(\{[^;]*?\}|[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)?)")
SUPER_PATH = re.compile(r"\bsuper::([A-Za-z_][A-Za-z0-9_]*)")
REEXPORT = re.compile(r"pub use ([a-z_][a-z0-9_]*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*)")


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def tests_removed(text):
    # `#[cfg(test)] mod tests { ... }` may use anything of its parent.
    at = text.find("#[cfg(test)]")
    return text if at < 0 else text[:at]


def names_in_braces(group):
    inner = group.strip("{}")
    depth, word, out = 0, "", []
    for ch in inner:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(word.strip())
            word = ""
            continue
        word += ch if depth == 0 else ""
    out.append(word.strip())
    return [w.split("::")[0].strip() for w in out if w.strip()]


def modules_of(src):
    """Module name -> files, for top-level modules and folder children."""
    mods = {}
    for path in src.rglob("*.rs"):
        rel = path.relative_to(src)
        if rel.parts == ("lib.rs",) or rel.parts == ("main.rs",):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "mod":
            parts.pop()
        mods.setdefault("::".join(parts), []).append(path)
    return mods


def reexports(src):
    out = {}
    for root in ("lib.rs", "main.rs"):
        path = src / root
        if not path.exists():
            continue
        for module, items in REEXPORT.findall(strip_comments(path.read_text())):
            names = names_in_braces(items) if items.startswith("{") else [items]
            for name in names:
                out[name] = module
    return out


def edges(src):
    mods = modules_of(src)
    alias = reexports(src)
    graph = {m: set() for m in mods}
    for module, files in mods.items():
        parent = module.rsplit("::", 1)[0] if "::" in module else ""
        for path in files:
            text = tests_removed(strip_comments(path.read_text()))
            targets = []
            for found in CRATE_PATH.findall(text):
                if found.startswith("{"):
                    targets += names_in_braces(found)
                else:
                    first, _, second = found.partition("::")
                    nested = f"{first}::{second}" if second else ""
                    targets.append(nested if nested in mods else first)
            for found in SUPER_PATH.findall(text):
                sibling = f"{parent}::{found}" if parent else found
                targets.append(sibling)
            for t in targets:
                t = alias.get(t, t)
                if t in mods and t != module and not module.startswith(t + "::"):
                    graph[module].add(t)
    return graph


def cycles(graph):
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def main():
    bad = 0
    crates = sys.argv[1:] or [p.parent.name for p in sorted(ROOT.glob("crates/*/src"))]
    for src in (ROOT / "crates" / name / "src" for name in crates):
        for cycle in cycles(edges(src)):
            bad += 1
            print(f"{src.parent.name}: {' -> '.join(cycle)}")
    if bad:
        print(f"{bad} module cycle(s)")
        return 1
    print("no module cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())

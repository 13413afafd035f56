#!/usr/bin/env python3
"""The include graph between the folders of src/: which folder's files include headers of which
other folder (`#include "stage/..."`), and whether that graph has a cycle (a folder including a
header of a folder that depends on it). With --check also the size rule: no source file of the
library, its binding or its kernels (src/, include/, python/src/, cuda/) reaches MAX_LINES lines,
and the binding rule: python/src/ includes only the public API (include/ckptw/), its own headers
and torch/pybind11 (as kvikio's Cython layer declares only installed headers), so that whatever
the binding needs, a LibTorch trainer can have too.

  scripts/include-graph.py            prints the graph as the Markdown table docs/development.md holds
  scripts/include-graph.py --check    exits 1, saying why, when the graph has a cycle,
                                      docs/development.md's table is not the graph of the tree,
                                      a source file is MAX_LINES lines or longer, or the binding
                                      includes an internal header

The table sits between the lines `<!-- include-graph -->` and `<!-- /include-graph -->`.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
DOC = ROOT / "docs" / "development.md"
BEGIN, END = "<!-- include-graph -->", "<!-- /include-graph -->"
SOURCES = ("src", "include", "python/src", "cuda")
SUFFIXES = (".cpp", ".hpp", ".h", ".cu", ".cuh")
MAX_LINES = 700
BINDING = ROOT / "python" / "src"
QUOTED = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/', re.MULTILINE)


def graph():
    """{folder: set of the other src/ folders whose headers it includes}."""
    folders = sorted(p.name for p in SRC.iterdir() if p.is_dir())
    edges = {f: set() for f in folders}
    for folder in folders:
        for source in sorted((SRC / folder).rglob("*")):
            if source.suffix not in (".cpp", ".hpp", ".h", ".cu", ".cuh"):
                continue
            for target in INCLUDE.findall(source.read_text(errors="replace")):
                if target != folder and target in edges:
                    edges[folder].add(target)
    return edges


def find_cycle(edges):
    """One cycle as a list of folders [a, b, ..., a], or None."""
    done = set()

    def visit(path):
        for nxt in sorted(edges[path[-1]]):
            if nxt in path:
                return path[path.index(nxt):] + [nxt]
            if nxt not in done:
                found = visit(path + [nxt])
                if found:
                    return found
        done.add(path[-1])
        return None

    for node in sorted(edges):
        if node not in done:
            found = visit([node])
            if found:
                return found
    return None


def levels(edges):
    """Each folder's level: 0 for a folder that includes no other, else 1 + its highest dependency's."""
    memo = {}

    def level(node):
        if node not in memo:
            memo[node] = 0 if not edges[node] else 1 + max(level(n) for n in edges[node])
        return memo[node]

    return {node: level(node) for node in edges}


def table(edges):
    lv = levels(edges)
    lines = ["| level | folder | includes headers of |", "|---|---|---|"]
    for node in sorted(edges, key=lambda n: (lv[n], n)):
        deps = ", ".join(f"`{d}`" for d in sorted(edges[node], key=lambda n: (lv[n], n))) or "(none)"
        lines.append(f"| {lv[node]} | `{node}` | {deps} |")
    return "\n".join(lines)


def too_long():
    """(path, lines) of each source file of MAX_LINES lines or more."""
    found = []
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in SUFFIXES:
                lines = path.read_text(errors="replace").count("\n")
                if lines >= MAX_LINES:
                    found.append((path.relative_to(ROOT), lines))
    return found


def binding_includes_outside_the_api():
    """(file, header) of each quoted include of the binding that is neither public nor its own."""
    own = {p.name for p in BINDING.iterdir()}
    found = []
    for source in sorted(BINDING.iterdir()):
        if source.suffix not in SUFFIXES:
            continue
        for header in QUOTED.findall(source.read_text(errors="replace")):
            if header.startswith("ckptw/") or header in own:
                continue
            found.append((source.relative_to(ROOT), header))
    return found


def documented():
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main():
    edges = graph()
    cycle = find_cycle(edges)
    if "--check" not in sys.argv[1:]:
        if cycle:
            print("cycle: " + " -> ".join(cycle), file=sys.stderr)
            return 1
        print(table(edges))
        return 0
    if cycle:
        print("src/ folders include each other's headers in a cycle: " + " -> ".join(cycle), file=sys.stderr)
        return 1
    if documented() != table(edges):
        print(f"{DOC.relative_to(ROOT)}'s include graph is not the tree's; replace the table between "
              f"{BEGIN} and {END} with the output of scripts/include-graph.py:\n{table(edges)}", file=sys.stderr)
        return 1
    long_files = too_long()
    if long_files:
        names = ", ".join(f"{path} ({lines} lines)" for path, lines in long_files)
        print(f"source files of {MAX_LINES} lines or more: {names}; split them along their concerns", file=sys.stderr)
        return 1
    outside = binding_includes_outside_the_api()
    if outside:
        names = ", ".join(f"{source}: {header}" for source, header in outside)
        print(f"the binding includes internal headers: {names}; it may use only include/ckptw/", file=sys.stderr)
        return 1
    print(f"include graph: {len(edges)} folders, no cycle, {DOC.relative_to(ROOT)} up to date; "
          f"every source file under {MAX_LINES} lines; the binding includes only the public API")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Rewrap code lines over 100 characters in notebooks or .py files: black (with string processing) on just the
statements that hold them; trailing comments are hoisted above, one-line docstrings wrapped. Needs `pip install black`.

    python tools/wrap_long_lines.py nbs/NN_name.ipynb kernels/x.py
"""

import ast, json, re, sys, textwrap
import black
from black.mode import Mode, Preview

MAX = 100
SKIP = re.compile(r"^\s*(%|!|#\|)")


def mode(width):
    return Mode(line_length=width, enabled_features={Preview.string_processing})


def stmts(tree):
    out = []

    def walk(node, parent, body):
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            seq = getattr(node, field, None)
            if not isinstance(seq, list):
                continue
            for ch in seq:
                if isinstance(ch, ast.stmt) or isinstance(ch, (ast.excepthandler, ast.match_case)):
                    if isinstance(ch, ast.stmt):
                        out.append((ch, node, seq))
                    walk(ch, ch if isinstance(ch, ast.stmt) else node, seq)

    walk(tree, None, tree.body)
    return out


def indent_of(s):
    return len(s) - len(s.lstrip(" "))


def fix_one(lines, L):
    "Reformat the statement group holding line L (1-based); return new lines or None."
    masked = [("pass" if SKIP.match(l) and not l.lstrip().startswith("#|") else l) for l in lines]
    masked = [
        (" " * indent_of(l) + "pass") if l.lstrip().startswith(("%", "!")) else l for l in lines
    ]
    try:
        tree = ast.parse("\n".join(masked))
    except SyntaxError:
        return None
    info = stmts(tree)
    parent_of = {id(n): p for n, p, _ in info}
    body_of = {id(n): b for n, _, b in info}
    cands = [n for n, _, _ in info if n.lineno <= L <= n.end_lineno]
    if not cands:
        return None
    node = max(cands, key=lambda n: (n.lineno, -n.end_lineno))  # innermost
    group = [node]
    while True:
        body = body_of[id(group[0])]
        a, b = min(n.lineno for n in group), max(n.end_lineno for n in group)
        sib = [n for n in body if not (n.end_lineno < a or n.lineno > b)]
        if len(sib) > len(group):
            group = sib
            continue
        first = lines[a - 1]
        starts = indent_of(first) == group[0].col_offset and group[0].col_offset == min(
            n.col_offset for n in group
        )
        tail = lines[b - 1][group[-1].end_col_offset :].strip()
        if (
            starts
            and (not tail or tail.startswith("#"))
            and not any(l.startswith("#|") for l in lines[a - 1 : b])
        ):
            break
        p = parent_of.get(id(group[0]))
        if p is None or not isinstance(p, ast.stmt):
            return None
        group = [p]
    ind = indent_of(lines[a - 1])
    chunk = [l[ind:] if l.strip() else "" for l in lines[a - 1 : b]]
    if any(l.strip() and indent_of(l) < ind for l in lines[a - 1 : b]):
        pass
    try:
        new = black.format_str("\n".join(chunk) + "\n", mode=mode(MAX - ind))
    except Exception as e:
        return None
    new = [(" " * ind + l) if l else l for l in new.rstrip("\n").split("\n")]
    if new == lines[a - 1 : b]:
        return None
    return lines[: a - 1] + new + lines[b:]


def wrap_comment(line):
    ind = indent_of(line)
    body = line.strip()[1:].strip()
    return textwrap.wrap(
        body,
        MAX - ind - 2,
        initial_indent=" " * ind + "# ",
        subsequent_indent=" " * ind + "# ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def code_comment(line):
    "Split `line` into (code, comment) using the tokenizer; comment is None when there is none."
    import io, tokenize

    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line + "\n").readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return line, None
    for t in toks:
        if t.type == tokenize.COMMENT:
            return line[: t.start[1]].rstrip(), t.string
    return line, None


def hoist_comment(line):
    code, com = code_comment(line)
    if com is None or not code.strip() or len(code) > MAX:
        return None
    ind = " " * indent_of(line)
    return wrap_comment(ind + com) + [code]


DOC = re.compile(r'^(\s*)"([^"\\]*)"\s*$')


def wrap_docstring(line):
    m = DOC.match(line)
    if not m:
        return None
    ind, text = m.groups()
    w = textwrap.wrap(text, MAX - len(ind) - 3, break_long_words=False, break_on_hyphens=False)
    w[0] = ind + '"""' + w[0]
    w[1:] = [ind + l for l in w[1:]]
    w[-1] += '"""'
    return w


def fix_source(src):
    lines = src.split("\n")
    tried = set()
    while True:
        longs = [
            i + 1
            for i, l in enumerate(lines)
            if len(l) > MAX and not SKIP.match(l) and i + 1 not in tried
        ]
        if not longs:
            return "\n".join(lines)
        L = longs[-1]
        if lines[L - 1].lstrip().startswith("#"):
            lines = lines[: L - 1] + wrap_comment(lines[L - 1]) + lines[L:]
            continue
        hoisted = hoist_comment(lines[L - 1])
        if hoisted:
            lines = lines[: L - 1] + hoisted + lines[L:]
            continue
        doc = wrap_docstring(lines[L - 1])
        if doc:
            lines = lines[: L - 1] + doc + lines[L:]
            continue
        new = fix_one(lines, L)
        if new is None:
            tried.add(L)
            continue
        lines = new
        tried = set()


def main(paths):
    for p in paths:
        if p.endswith(".ipynb"):
            nb = json.load(open(p))
            for c in nb["cells"]:
                if c["cell_type"] != "code":
                    continue
                src = "".join(c["source"])
                new = fix_source(src)
                if new != src:
                    c["source"] = new.splitlines(keepends=True)
            with open(p, "w") as f:
                f.write(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        else:
            src = open(p).read()
            new = fix_source(src.rstrip("\n")) + "\n"
            if new != src:
                open(p, "w").write(new)


if __name__ == "__main__":
    main(sys.argv[1:])

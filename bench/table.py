"""Bench rows and the one Markdown table they are printed as."""

COLUMNS = ("row", "value", "baseline", "ratio", "target", "ok")
HEADER = ("measure", "value", "baseline", "ratio", "target", "pass")


def row(name, value, baseline, ratio=None, target="—", ok=None):
    """One row: what was measured, against which baseline, and whether it meets its target (None: none)."""
    return {"row": name, "value": value, "baseline": baseline, "ratio": ratio, "target": target, "ok": ok}


def failed(name, why):
    """A row for a measurement that could not be taken."""
    return row(name, "not measured", why, target="measured", ok=False)


def _cell(key, value):
    if key == "ratio":
        return "—" if value is None else f"{value:.2f}×"
    if key == "ok":
        return {None: "—", True: "pass", False: "**FAIL**"}[value]
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(rows):
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(k, r.get(k)) for k in COLUMNS) + " |")
    return "\n".join(lines)

"""Plain-text tables for the command line: the benchmark launch and the leaderboard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from analytics.benchmarks.leaderboard import COLUMNS


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, right: Sequence[int] = ()) -> str:
    """A fixed-width table; columns whose index is in `right` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers], *[["–" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        pairs = enumerate(zip(r, widths, strict=True))
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in pairs).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


def _cell(m: dict[str, Any], unit: str) -> str:
    if m["mean"] is None:
        return f"– (n={m['n']})"
    if unit == "pct":
        return f"{m['mean']:.0%} [{m['low']:.0%}–{m['high']:.0%}] n={m['n']}"
    return f"{m['mean']:.2f} [{m['low']:.2f}–{m['high']:.2f}] n={m['n']}"


def leaderboard_text(data: dict[str, Any]) -> str:
    """The leaderboard as the page shows it: one table per opponent fingerprint."""
    out = [f"Leaderboard · suite {data['suite']} · sorted by {data['sort']} · win = buyer share > "
           f"{data['win_threshold']:.0%} · 95% bootstrap CIs", data["note"]]
    if not data["tables"]:
        out.append("No completed benchmark runs yet for this suite.")
    for t in data["tables"]:
        o = t["opponent"]
        out.append("")
        prompt = f", prompt {o['prompt_version']}" if o.get("prompt_version") else ""
        out.append(f"Opponents {o['fingerprint']}: {o['label']}{prompt}; {o['benchmark_runs']} benchmark run(s)")
        rows = []
        for r in t["rows"]:
            flags = ",".join(d["metric"] for d in r["drift"])
            rows.append([r["rank"], r["label"] + (" (baseline)" if r["baseline"] else ""), r["buyer_fingerprint"],
                         *(_cell(r["metrics"][c.key], c.fmt) for c in COLUMNS), r["runs"],
                         ",".join(v[:8] for v in r["code_versions"]), flags or "–"])
        out.append(table(["#", "buyer", "fingerprint", *(c.label for c in COLUMNS), "runs", "code", "drift"], rows,
                         right=(0, 8)))
    return "\n".join(out)

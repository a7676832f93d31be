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


def _versus(v: dict[str, Any] | None) -> str:
    """A row's comparison with the top score: 'top', or the paired difference, Holm p and its verdict."""
    if not v:
        return "–"
    if v.get("leader"):
        return "top score"
    if v.get("p_holm") is None:
        return "no pairs"
    verdict = "survives" if v["survives"] else "not significant"
    return f"{v['difference']:+.3f} p={v['p_holm']:.3g} {verdict}"


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
            tag = " (baseline)" if r["baseline"] else " (exploit canary)" if r.get("canary") else ""
            rows.append([r["rank"], r["label"] + tag, r["buyer_fingerprint"],
                         *(_cell(r["metrics"][c.key], c.fmt) for c in COLUMNS), r["runs"], _versus(r.get("vs_leader")),
                         ",".join(v[:8] for v in r["code_versions"]), flags or "–"])
        out.append(table(["#", "buyer", "fingerprint", *(c.label for c in COLUMNS), "runs", "vs top score (Holm p)",
                          "code", "drift"], rows, right=(0, len(COLUMNS) + 3)))
        if t.get("adjusted"):
            out.append(data.get("holm_note", ""))
    return "\n".join(out)

"""Boards as Markdown (for the README) and as one static HTML page with an SVG plot per board.

The HTML page is self-contained (inline CSS and SVG, no script, nothing fetched),
and every string that came from an entry is escaped: submissions are untrusted data.
In Markdown that means HTML's ``<``, ``>`` and ``&`` as entities (a renderer that
allows raw HTML must see none) and Markdown's own punctuation backslash-escaped;
control characters are dropped everywhere (`plain`).
"""

from __future__ import annotations

import html
import math
import re

from recguard.leaderboard.board import NO_DEFENSE, Board, Row, Score, plain

MD_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()!|~])")   # inline syntax; never at a line start

MARK_START = "<!-- leaderboard:start -->"
MARK_END = "<!-- leaderboard:end -->"
LEGEND = ("Ranked by the attack's success under each defense, best first; mean ± std over "
          "seeds. The first metric and the second are measured under attack, `clean` without "
          "it; each Δ is against the same entry's undefended condition (same seeds and "
          "targets), so the clean Δ is the defense's cost.")


def score_text(score: Score, with_std: bool = True) -> str:
    if score.mean is None:
        return "n/a"
    if with_std and score.seeds > 1:
        return f"{score.mean:.4f} ± {score.std:.4f}"
    return f"{score.mean:.4f}"


def delta_text(delta: float | None) -> str:
    return "" if delta is None else f"{delta:+.4f}"


def arrow(higher_is_better: bool) -> str:
    return "↑" if higher_is_better else "↓"


def columns(board: Board) -> list[str]:
    """Attack success and quality under attack, the quality on clean data, each with its Δ."""
    success = f"{board.success_metric} {arrow(board.success_higher_is_better)}"
    quality = f"{board.quality_metric} {arrow(board.quality_higher_is_better)}"
    return [plain(c) for c in ("#", "defense", success, "Δ", quality, "Δ",
                               f"clean {board.quality_metric}", "Δ", "seeds", "submitter")]


def cells(rank: int, row: Row, with_std: bool = True) -> list[str]:
    def score(s: Score) -> str:
        return score_text(s, with_std)

    return [str(rank), plain(row.defense), score(row.success), delta_text(row.success_delta),
            score(row.quality), delta_text(row.quality_delta), score(row.clean_quality),
            delta_text(row.clean_quality_delta), str(len(row.seeds)), plain(row.submitter)]


def code_href(code: str, root: str) -> str:
    """Where a row's code link points; ``root`` is the repository root seen from the page."""
    return code if code.startswith(("https://", "http://")) else root + code


def markdown(boards: list[Board], root: str = "") -> str:
    lines = [LEGEND + " Rendered by `recguard leaderboard render`.", ""]
    if not boards:
        lines.append("No entries yet: see docs/leaderboard.md.")
    for board in boards:
        lines += [f"### {md_escape(board.title)}", ""]
        head = [md_escape(c) for c in columns(board)]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for rank, row in enumerate(board.rows, 1):
            text = [md_escape(c) for c in cells(rank, row)]
            # code_href is safe in a link: entry.is_code_link admits no space, quote or bracket
            text[-1] = f"[{text[-1]}]({code_href(row.code, root)})"
            text[1] = f"**{text[1]}**" if row.defense == NO_DEFENSE else text[1]
            lines.append("| " + " | ".join(text) + " |")
        lines.append("")
    return "\n".join(lines)


def md_escape(text: str) -> str:
    """Text from an entry as literal Markdown: no HTML, no link, emphasis or table syntax."""
    text = html.escape(plain(text), quote=False)   # & < > as entities
    return MD_PUNCTUATION.sub(r"\\\1", text)


def rendered_files(boards: list[Board], root: str) -> dict[str, str]:
    """What `recguard leaderboard render` writes into the leaderboard folder, by file name."""
    return {"LEADERBOARD.md": "# Leaderboard\n\n" + markdown(boards, root) + "\n",
            "index.html": page(boards, root)}


def splice_markdown(document: str, table: str) -> str:
    """``document`` with the text between the leaderboard markers replaced by ``table``."""
    if MARK_START not in document or MARK_END not in document:
        return document.rstrip("\n") + f"\n\n{MARK_START}\n{table}\n{MARK_END}\n"
    head, rest = document.split(MARK_START, 1)
    _, tail = rest.split(MARK_END, 1)
    return f"{head}{MARK_START}\n{table}\n{MARK_END}{tail}"


def page(boards: list[Board], root: str = "../") -> str:
    sections = [_section(board, root) for board in boards] or ["<p>No entries yet.</p>"]
    return _PAGE.format(count=sum(len(b.rows) for b in boards),
                        sections="\n".join(sections))


def _section(board: Board, root: str) -> str:
    e = html.escape
    head = "".join(f"<th>{e(c)}</th>" for c in columns(board))
    body = []
    for rank, row in enumerate(board.rows, 1):
        text = cells(rank, row)
        tds = [f"<td>{e(t)}</td>" for t in text[:-1]]
        tds.append(f'<td><a href="{e(code_href(row.code, root), quote=True)}" '
                   f'title="{e(plain(row.paper), quote=True)}">{e(text[-1])}</a></td>')
        css = ' class="undefended"' if row.defense == NO_DEFENSE else ""
        body.append(f"<tr{css}>{''.join(tds)}</tr>")
    return (f"<section><h2>{e(board.title)}</h2>\n{scatter(board)}\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></section>")


def scatter(board: Board, width: int = 640, height: int = 380) -> str:
    """Attack success (y) against quality under attack (x), one point per row, ± std bars."""
    e = html.escape
    points = [r for r in board.rows if r.success.mean is not None and r.quality.mean is not None]
    left, right, top, bottom = 70, 30, 20, 50
    xs = [v for r in points for v in _span(r.quality)]
    ys = [v for r in points for v in _span(r.success)]
    x0, x1 = _padded(xs)
    y0, y1 = _padded(ys)

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)

    parts = [f'<svg class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             f'role="img" aria-label="{e(board.title, quote=True)}">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" '
             f'height="{height - top - bottom}" class="frame"/>']
    for tick in _ticks(x0, x1):
        parts.append(f'<line x1="{px(tick):.1f}" y1="{top}" x2="{px(tick):.1f}" y2="{height - bottom}" '
                     f'class="grid"/><text x="{px(tick):.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{tick:g}</text>')
    for tick in _ticks(y0, y1):
        parts.append(f'<line x1="{left}" y1="{py(tick):.1f}" x2="{width - right}" y2="{py(tick):.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{py(tick) + 4:.1f}" '
                     f'text-anchor="end">{tick:g}</text>')
    quality = f"{board.quality_metric} under attack {arrow(board.quality_higher_is_better)}"
    success = f"{board.success_metric} {arrow(board.success_higher_is_better)}"
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 10}" text-anchor="middle" '
                 f'class="axis">{e(quality)}</text>')
    parts.append(f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" '
                 f'text-anchor="middle" class="axis">{e(success)}</text>')
    for row in points:
        x, y = px(row.quality.mean), py(row.success.mean)
        kind = "undefended" if row.defense == NO_DEFENSE else "defense"
        if row.seeds and len(row.seeds) > 1:
            lo_x, hi_x = (px(v) for v in _span(row.quality))
            lo_y, hi_y = (py(v) for v in _span(row.success))
            parts.append(f'<line x1="{lo_x:.1f}" y1="{y:.1f}" x2="{hi_x:.1f}" y2="{y:.1f}" class="err"/>'
                         f'<line x1="{x:.1f}" y1="{lo_y:.1f}" x2="{x:.1f}" y2="{hi_y:.1f}" class="err"/>')
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" class="{kind}">'
                     f"<title>{e(row.defense)}: {e(score_text(row.success))} / "
                     f"{e(score_text(row.quality))}</title></circle>"
                     f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" class="label">{e(row.defense)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _span(score: Score) -> tuple[float, float]:
    std = score.std or 0.0
    return score.mean - std, score.mean + std


def _padded(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 1.0
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or max(abs(hi) * 0.1, 0.01)
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step) + 1)]


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>recguard leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 0.2em; }}
section {{ margin: 2.5em 0; }}
table {{ border-collapse: collapse; margin-top: 0.8em; font-size: 0.9em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; white-space: nowrap; }}
th:nth-child(2), td:nth-child(2), td:last-child, th:last-child {{ text-align: left; }}
tr.undefended td {{ background: #fff3f0; }}
svg.plot text {{ font-size: 12px; fill: #444; }}
svg.plot text.axis {{ font-size: 13px; fill: #222; }}
svg.plot .frame {{ fill: #fafafa; stroke: #999; }}
svg.plot .grid {{ stroke: #e4e4e4; }}
svg.plot .err {{ stroke: #888; }}
svg.plot circle.defense {{ fill: #2b6cb0; }}
svg.plot circle.undefended {{ fill: #c53030; }}
svg.plot text.label {{ font-size: 12px; fill: #111; }}
</style></head>
<body>
<h1>recguard leaderboard</h1>
<p>{count} rows. Each chart plots the attack's success (lower is
better) against the recommendation quality under attack (higher is better) for every
defense; red is the undefended recommender. Bars are ± one standard deviation over seeds.
Numbers are only comparable within one protocol.</p>
{sections}
</body></html>
"""

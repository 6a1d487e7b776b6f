"""axe-core in the page under test: ``violations(page)`` runs the WCAG 2.0/2.1/2.2 A and AA rules.

axe-core comes from npm (``package.json``; ``npm ci`` puts it in ``node_modules/``). Missing, the
test is skipped locally and fails under ``CI=true``.
"""
from __future__ import annotations

from pathlib import Path

from servers import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
AXE_SCRIPT = ROOT / "node_modules" / "axe-core" / "axe.min.js"
# axe-core has no separate `wcag22a` rules today; the tag is accepted and kept for later versions.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
BLOCKING_IMPACTS = ("serious", "critical")


def inject(page) -> str:
    """Load axe-core into `page` (once); returns its version."""
    if not AXE_SCRIPT.is_file():
        skip_or_fail(f"axe-core not found at {AXE_SCRIPT.relative_to(ROOT)}: run npm ci")
    if not page.evaluate("typeof window.axe === 'object'"):
        # The pages' Content-Security-Policy (default-src 'self') blocks the inline <script> that
        # page.add_script_tag() would add, as it should. Evaluating the source through the
        # DevTools protocol is not subject to CSP, so the page is checked with its real headers
        # (no bypass_csp context).
        page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8") + "\n;void 0")
    return page.evaluate("window.axe.version")


def violations(page, tags: list[str] | None = None) -> list[dict]:
    """axe's violations on the page as it is now: dicts with id, impact, help, helpUrl, nodes."""
    inject(page)
    return page.evaluate(
        """async (tags) => {
            const results = await window.axe.run(document, {
                runOnly: {type: 'tag', values: tags},
                resultTypes: ['violations'],
            });
            return results.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl, tags: v.tags,
                nodes: v.nodes.map(n => ({target: n.target, html: n.html, summary: n.failureSummary})),
            }));
        }""",
        tags or WCAG_TAGS,
    )


def blocking(found: list[dict]) -> list[dict]:
    """The serious and critical ones."""
    return [v for v in found if v["impact"] in BLOCKING_IMPACTS]


def describe(found: list[dict]) -> str:
    """Violations as readable lines: rule id, impact, what, and each element's selector."""
    if not found:
        return "no violations"
    lines = []
    for v in found:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for node in v["nodes"]:
            lines.append(f"    {' '.join(map(str, node['target']))}: {node['html'][:160]}")
            if node.get("summary"):
                lines.extend("      " + line for line in node["summary"].splitlines())
    return "\n".join(lines)

"""The quality-vs-cost plot of `semroute eval-selection`, as a hand-written SVG (no plotting
dependency): the selector's curves, every single model, the oracle and random."""
from __future__ import annotations

from html import escape

W, H, PAD = 720, 460, 60
COLOURS = {"lambda": "#1f77b4", "tolerance": "#2ca02c"}


def selection_svg(result: dict) -> str:
    refs = result["references"]
    points = [*refs["single_models"], refs["oracle"], refs["random"], *result["curve"], *result["curve_tolerance"]]
    max_cost = max(p["cost"] for p in points) * 1.05 or 1.0
    lo = min(p["quality"] for p in points)
    hi = max(p["quality"] for p in points)
    lo, hi = max(0.0, lo - 0.05), min(1.0, hi + 0.05)

    def xy(p):
        return (PAD + (W - 2 * PAD) * p["cost"] / max_cost, H - PAD - (H - 2 * PAD) * (p["quality"] - lo) / max(hi - lo, 1e-6))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{escape(result["title"])}</text>',
             f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="black"/>',
             f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="black"/>',
             f'<text x="{W / 2}" y="{H - 20}" text-anchor="middle">cost (USD per 1M tokens, input + output)</text>',
             f'<text x="16" y="{H / 2}" transform="rotate(-90 16 {H / 2})" text-anchor="middle">quality (mean score)</text>']
    for i in range(6):
        c, q = max_cost * i / 5, lo + (hi - lo) * i / 5
        x, _ = xy({"cost": c, "quality": lo})
        _, y = xy({"cost": 0, "quality": q})
        parts += [f'<text x="{x:.1f}" y="{H - PAD + 15}" text-anchor="middle">{c:.2f}</text>',
                  f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end">{q:.2f}</text>']
    for key, label in (("curve", "lambda"), ("curve_tolerance", "tolerance")):
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in map(xy, sorted(result[key], key=lambda p: p["cost"])))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[label]}" stroke-width="2"/>')
    for p in refs["single_models"]:
        x, y = xy(p)
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#777"/>',
                  f'<text x="{x + 5:.1f}" y="{y - 4:.1f}" fill="#555" font-size="9">{escape(p["model"])}</text>']
    for name, colour in (("oracle", "#d62728"), ("random", "#9467bd")):
        x, y = xy(refs[name])
        parts += [f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>',
                  f'<text x="{x + 6:.1f}" y="{y + 4:.1f}" fill="{colour}">{name}</text>']
    legend = [("selector: score − λ·price", COLOURS["lambda"]), ("selector: cheapest within tolerance", COLOURS["tolerance"])]
    for i, (text, colour) in enumerate(legend):
        y = PAD + 14 * i
        parts += [f'<line x1="{W - PAD - 200}" y1="{y}" x2="{W - PAD - 180}" y2="{y}" stroke="{colour}" stroke-width="2"/>',
                  f'<text x="{W - PAD - 175}" y="{y + 4}">{escape(text)}</text>']
    parts.append("</svg>")
    return "\n".join(parts) + "\n"

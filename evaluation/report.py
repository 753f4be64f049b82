"""report.html: one self-contained page (plots inlined as PNG, no network), the rules side by side."""

from __future__ import annotations

import base64
import html
import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt

from evaluation.runner import RULES


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(figure, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{_png(figure)}">'


def roc_plot(entry: dict, rule: str) -> str:
    figure, axes = plt.subplots(figsize=(4, 4))
    if entry["roc"]:
        axes.plot(entry["roc"]["fpr"], entry["roc"]["tpr"], marker=".", label=f"AUC {entry['auc']:.3f}")
        axes.legend(loc="lower right")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="false-positive rate (REAL called FAKE)", ylabel="true-positive rate", title=f"ROC, {rule}")
    return _img(figure, f"ROC curve, {rule} rule")


def confusion_plot(matrix: list[list[int]], title: str) -> str:
    figure, axes = plt.subplots(figsize=(3.4, 3))
    axes.imshow(matrix, cmap="Blues")
    for i in range(2):
        for j in range(2):
            axes.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=14)
    axes.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["FAKE", "REAL"], yticklabels=["FAKE", "REAL"])
    axes.set(xlabel="predicted", ylabel="true", title=title)
    return _img(figure, title)


def reliability_plot(entry: dict, rule: str) -> str:
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    if entry["calibration"]:
        calibration = entry["calibration"]
        axes.plot(calibration["mean_predicted"], calibration["fraction_fake"], marker="o")
        axes.set_title(f"reliability, {rule} (ECE {calibration['ece']:.3f})")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean P(FAKE) in bin", ylabel="fraction FAKE")
    return _img(figure, f"reliability diagram, {rule} rule")


def histogram_plot(entry: dict, rule: str) -> str:
    figure, axes = plt.subplots(figsize=(4, 3))
    for label, color in (("FAKE", "tab:red"), ("REAL", "tab:blue")):
        axes.hist(entry["p_fake"][label], bins=20, range=(0, 1), alpha=0.6, color=color, label=f"true {label}")
    if entry["threshold"]:
        axes.axvline(entry["threshold"]["value"], color="black", linestyle="--", label="chosen threshold")
    axes.axvline(0.5, color="grey", linestyle=":")
    axes.set(xlabel="P(FAKE)", ylabel="videos", title=f"P(FAKE) by true class, {rule}")
    axes.legend(fontsize=8)
    return _img(figure, f"P(FAKE) histograms, {rule} rule")


def timing_plot(summary: dict) -> str:
    figure, axes = plt.subplots(figsize=(5, 3))
    points = summary["timing"]["points"]
    axes.scatter([p["duration_s"] for p in points], [p["total_s"] for p in points])
    axes.set(xlabel="video duration (s)", ylabel="analysis time (s)", title="time vs duration")
    return _img(figure, "analysis time against video duration")


def _cell(value: object) -> str:
    """A value as HTML: a mapping is a table of its own (nested), a list its items, never a repr."""
    if isinstance(value, dict):
        return _table(value)
    if isinstance(value, list | tuple):
        return ", ".join(_cell(item) for item in value) or "none"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return html.escape(str(value))


def _table(mapping: dict, headers: tuple[str, str] | None = None) -> str:
    """One row per key (name, value): how the report shows a mapping, so that no Python dict repr
    (``{'FAKE': 5}``) ever reaches the page."""
    head = f"<tr><th>{html.escape(headers[0])}</th><th>{html.escape(headers[1])}</th></tr>" if headers else ""
    rows = "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{_cell(value)}</td></tr>" for key, value in mapping.items()
    )
    return f'<table class="values">{head}{rows}</table>'


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _timing_section(summary: dict) -> str:
    """The timings, from this run's own analyses only, and in words what was left out and why: a
    cached answer's times are those of the analysis that first made it, not measured here."""
    timing, analyzed = summary["timing"], summary["analyzed"]
    left_out, measured = timing["left_out"], timing["measured"]
    of_all = f"of {_plural(analyzed, 'answer', 'answers')}"
    notes = []
    if cached := left_out["cached"]:
        notes.append(
            f"{cached} {of_all} came from the history and {'is' if cached == 1 else 'are'} left out of the timings"
            " (their times are those of the analysis that first made them; run without --use-history to measure"
            " every video)."
        )
    if unknown := left_out["not_recorded"]:
        notes.append(
            f"{unknown} {of_all} {'does' if unknown == 1 else 'do'} not say whether {'it' if unknown == 1 else 'they'}"
            " came from the history (rows from an older deepfake-eval, or a service that does not report it)"
            f" and {'is' if unknown == 1 else 'are'} left out of the timings too."
        )
    parts = []
    if measured and timing["median_total_s"] is not None:
        only = f", over the {_plural(measured, 'video', 'videos')} analyzed in this run" if notes else ""
        parts.append(f"<p>Median analysis time {timing['median_total_s']:.2f} s per video{only}.</p>")
    elif analyzed:
        parts.append("<p>No analysis time was measured in this run.</p>")
    else:
        parts.append("<p>No video was analyzed.</p>")
    parts += [f"<p>{html.escape(note)}</p>" for note in notes]
    if timing["points"]:
        parts.append(timing_plot(summary))
    return "\n".join(parts)


def _metrics_table(name: str, metrics: dict) -> str:
    rows = "".join(
        f"<tr><td>{label}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td><td>{m['f1']:.3f}</td>"
        f"<td>{m['support']}</td></tr>"
        for label, m in metrics["per_class"].items()
    )
    return (
        f"<h4>{html.escape(name)}</h4><p>accuracy <b>{metrics['accuracy']:.3f}</b>, balanced accuracy "
        f"<b>{metrics['balanced_accuracy']:.3f}</b></p><table><tr><th>class</th><th>precision</th>"
        f"<th>recall</th><th>F1</th><th>videos</th></tr>{rows}</table>"
    )


def _rule_column(summary: dict, rule: str) -> str:
    entry = summary["rules"][rule]
    parts = [f"<h3>rule: {rule}</h3>"]
    if entry["auc"] is not None:
        ece = entry["calibration"]["ece"]
        parts.append(f"<p>AUC <b>{entry['auc']:.3f}</b>, expected calibration error (ECE) <b>{ece:.3f}</b></p>")
    else:
        parts.append("<p>AUC and calibration: need both classes</p>")
    parts.append(_metrics_table("as the service answered", entry["served"]))
    parts.append(_metrics_table("threshold 0.5", entry["at_0_5"]))
    if entry["threshold"]:
        chosen = entry["threshold"]
        how = (
            "maximising balanced accuracy" if chosen["mode"] == "balanced_accuracy" else f"FPR ≤ {chosen['target_fpr']}"
        )
        parts.append(_metrics_table(f"threshold {chosen['value']:.4f} (chosen on this set, {how})", chosen["metrics"]))
    parts.append(confusion_plot(entry["served"]["confusion_matrix"], f"confusion, {rule} (as answered)"))
    parts += [roc_plot(entry, rule), reliability_plot(entry, rule), histogram_plot(entry, rule)]
    return "<td>" + "\n".join(parts) + "</td>"


def render(summary: dict) -> str:
    """The whole page from summary.json's contents (nothing else is read, nothing fetched)."""
    model = summary["model"]
    banner = (
        '<div class="demo">UNTRAINED DEMO MODEL: random weights answered. These numbers say nothing about '
        "deepfakes; export a trained checkpoint and evaluate that.</div>"
        if summary["untrained_demo"]
        else ""
    )
    failed = "".join(
        f"<tr><td>{html.escape(f['video'])}</td><td>{f['label']}</td><td>{html.escape(f['error'])}</td></tr>"
        for f in summary["failed"]
    )
    columns = "".join(_rule_column(summary, rule) for rule in RULES)
    errors = _table(summary["errors"], ("error", "videos")) if summary["errors"] else "<p>Errors: none.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Deepfake detector evaluation</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
.demo {{ background: #b00020; color: white; font-size: 1.3em; font-weight: bold; padding: 1em; margin-bottom: 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; }}
table.rules > tbody > tr > td {{ vertical-align: top; border: none; padding-right: 2em; }}
table.values th {{ text-align: left; font-weight: normal; background: #f4f4f4; }}
img {{ display: block; margin: 0.5em 0; }}
</style></head><body>
{banner}
<h1>Evaluation: {summary["analyzed"]} of {summary["videos"]} videos analyzed</h1>
<h2>Model</h2>
{_table(model)}
<h2>Videos</h2>
{_table(summary["by_label"], ("true label", "videos"))}
{errors}
<h2>The verdict rules side by side</h2>
<table class="rules"><tr>{columns}</tr></table>
<h2>Time</h2>
{_timing_section(summary)}
<h2>Failed videos</h2>
{f"<table><tr><th>video</th><th>label</th><th>error</th></tr>{failed}</table>" if failed else "<p>none</p>"}
</body></html>
"""

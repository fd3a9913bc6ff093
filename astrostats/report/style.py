"""One look for every figure: a colour per circuit, null and control (the same in every panel of every figure),
the reference lines (theory, tolerance, synapse counts), verdict colours, and matplotlib/seaborn styles set once.

Figures ask ``colour(name)`` rather than building their own palettes, so that 'uniform' is the same red in
Figure 2 and Figure 9 and a reader learns the legend once.
"""
from __future__ import annotations

import contextlib
import hashlib
import warnings
from functools import cache

import numpy as np

from astrostats.constants import DEFAULT_CIRCUIT

DPI = 150  # for a raster save (the report itself takes vector SVG)
MAX_PIXELS_WIDE = 1800  # a wide raster is saved at a lower DPI
FORMAT = "svg"  # vector figures: sharp at any zoom, and typst embeds them as they are
PAGE_WIDTH_IN = 17.6 / 2.54  # the report's text width: a figure drawn at this size is printed at scale 1
MAX_HEIGHT_IN = 11.5 / 2.54  # the tallest figure the report prints at scale 1 (two fit on a page)
MIN_FONT_PT = 7.0  # the smallest text a figure may print at

# The circuit under audit in one strong blue; nulls in warm colours; fitted controls in greens/purples;
# the paper's alternative feature maps in blues and greys.
COLOURS = {
    DEFAULT_CIRCUIT: "#1f5fbf",
    "ideal": "#1f5fbf",
    "positive": "#1f5fbf",
    "orthogonal": "#5aa0e6",
    "trigonometric": "#8c8c8c",
    "hyperbolic": "#2a9d8f",
    "uniform": "#d62728",
    "elu_linear": "#ff7f0e",
    "no_astrocyte": "#e377c2",
    "no_astrocyte_global": "#e377c2",
    "other_sequence": "#8c564b",
    "shuffled_sequence": "#8c564b",
    "other_head": "#bcbd22",
    "learned_feature": "#2ca02c",
    "fitted_mlp": "#9467bd",
    "learned_feature_shuffled": "#98df8a",
    "fitted_mlp_shuffled": "#c5b0d5",
    "dam_drop": "#17becf",  # C7's neurons-only alternatives (a fan-in limit '@N' keeps its circuit's colour)
    "dam_merge": "#0b7285",
    "hebbian_only": "#a05195",
    "interneuron_tree": "#e6ab02",
    "interneuron_sampled": "#66a61e",
    "exact": "#000000",
    "theory": "#000000",
}
THEORY_STYLE = {"color": "black", "ls": "--", "lw": 1.1}
TOLERANCE_STYLE = {"color": "0.45", "ls": ":", "lw": 0.9}  # the 10 % error line
SYNAPSE_STYLE = {"color": "#6a3d9a", "ls": "-.", "lw": 0.9}  # one astrocyte's synapse count
LOGIT_SCALE_COLOURS = {"diffuse": "#4daf4a", "typical": "#1f5fbf", "peaked": "#8b6508"}  # not a null's red
VERDICT_COLOURS = {"SUPPORTED": "#1a7f37", "NOT_SUPPORTED": "#cf222e", "INCONCLUSIVE": "#9a6700",
                   "NOT_TESTABLE": "#57606a", "INSUFFICIENT_DATA": "#57606a"}


@cache
def _spare() -> tuple[str, ...]:
    """matplotlib's tab20 colours (imported here, not at the top: the audit and a rebuild whose figures are
    reused never import matplotlib)."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    return tuple(to_hex(c) for c in colormaps["tab20"].colors)


#: the circuit under audit while figures are drawn (:func:`drawing_for`): it takes the audit's blue
_AUDITED = [DEFAULT_CIRCUIT]
PAPER_CIRCUIT_AS_COMPARATOR = "#7a8fb0"  # the paper's circuit, when another circuit is under audit


@contextlib.contextmanager
def drawing_for(circuit: str):
    """Figures drawn inside give ``circuit`` the audit's blue (and the paper's circuit, if another, a grey-blue)."""
    _AUDITED.append(circuit)
    try:
        yield
    finally:
        _AUDITED.pop()


def colour(name) -> str:
    """The colour of a circuit, null, control or feature map; unknown names get a stable colour from a spare
    palette (chosen by a hash of the name, so the same name is the same colour in every figure)."""
    name = str(name).split("@")[0]
    if name == _AUDITED[-1]:
        return COLOURS[DEFAULT_CIRCUIT]
    if name == DEFAULT_CIRCUIT:
        return PAPER_CIRCUIT_AS_COMPARATOR
    if name in COLOURS:
        return COLOURS[name]
    if name in LOGIT_SCALE_COLOURS:
        return LOGIT_SCALE_COLOURS[name]
    for known, value in COLOURS.items():  # variants of a known circuit ('astrocyte_slow' -> astrocyte's family)
        if name.startswith(known + "_"):
            return value
    spare = _spare()
    return spare[int(hashlib.sha256(name.encode()).hexdigest(), 16) % len(spare)]


def palette(names) -> dict:
    return {name: colour(name) for name in names}


def dpi_for(figure) -> float:
    """The DPI a figure is saved at: DPI, lower for a figure wider than MAX_PIXELS_WIDE pixels at DPI."""
    return min(DPI, MAX_PIXELS_WIDE / float(figure.get_size_inches()[0]))


def apply() -> None:
    """Set matplotlib (Agg) and seaborn styles once for every figure (called by the figure builder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="ticks", font_scale=1.0)
    plt.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": DPI, "figure.max_open_warning": 0, "svg.fonttype": "path", "svg.hashsalt": "astrostats",
        "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": 8, "axes.labelsize": 7.5,
        "figure.titlesize": 8.5, "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7,
        "legend.frameon": False, "legend.handlelength": 1.6, "legend.labelspacing": 0.3,
        "lines.linewidth": 1.1, "lines.markersize": 3, "font.family": "DejaVu Sans",
    })


def grid(panels: int, columns: int = 3, aspect: float = 0.75, extra: float = 0.3) -> tuple[int, int, tuple]:
    """Rows, columns and figure size (inches) for ``panels`` panels at the report's text width: drawn at the
    size it is printed, so that the 7 pt text is 7 pt on paper. ``aspect``: panel height / width; ``extra``:
    inches for a suptitle or a legend below."""
    columns = max(1, min(columns, panels))
    if panels == 4 and columns == 3:  # two full rows rather than three panels and a lone one
        columns = 2
    rows = -(-panels // columns)
    return rows, columns, (PAGE_WIDTH_IN, min(MAX_HEIGHT_IN, rows * PAGE_WIDTH_IN / columns * aspect + extra))


def print_scale(width_in: float, height_in: float) -> float:
    """The factor a figure of this size is scaled by in the report: 1 when it fits the text width and the
    height limit (the report never enlarges a figure)."""
    return min(1.0, PAGE_WIDTH_IN / width_in, MAX_HEIGHT_IN / height_in)


SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def log_label(value: float, _position=None) -> str:
    """A log axis's tick label as plain text ('100', '10\u2075', '2\u00d710\u2075'): matplotlib's default labels
    are mathtext, whose parsing was a third of the figures' drawing time."""
    if not np.isfinite(value) or value <= 0:
        return ""
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10.0**exponent
    if -2 <= exponent <= 3:
        return f"{value:g}"
    power = f"10{str(exponent).translate(SUPERSCRIPT)}"
    return power if abs(mantissa - 1) < 1e-6 else f"{mantissa:g}\u00d7{power}"


def finish(fig, rect=(0, 0, 1, 1)) -> None:
    """Lay a figure out: log axes spanning two decades or more show their decades without minor ticks (matplotlib's
    eight per decade, labelled on short ranges, cost most of a figure's drawing time, creating and measuring tick
    artists); shorter ones keep minor ticks at 2 and 5, labelled where a panel could show one decade label or none, so that every panel has
    labelled values. Log labels are plain text (:func:`log_label`). Then tight_layout
    within ``rect``."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    for ax in fig.axes:
        for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            if axis.get_scale() == "log":
                low, high = sorted(limits)
                decades = np.log10(high / low) if low > 0 else np.inf
                axis.set_minor_locator(LogLocator(subs=(2.0, 5.0)) if decades < 2 else NullLocator())
                axis.set_major_formatter(FuncFormatter(log_label))  # plain text: no mathtext to parse
                # minor labels where a decade label may be missing: below two decades on y (stacked labels do
                # not collide), below one on x (side by side they crowd a narrow panel)
                labelled = decades < (2 if axis is ax.yaxis else 1)
                axis.set_minor_formatter(FuncFormatter(log_label) if labelled else NullFormatter())
    width, height = fig.get_size_inches()
    scale = print_scale(width, height)
    if scale < 1:
        fig.set_size_inches(width * scale, height * scale)
    with warnings.catch_warnings():  # a crowded panel is still drawn; its look is checked by rendering
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout(rect=rect, pad=0.4, h_pad=0.6, w_pad=0.6)

"""Flame graphs and a where-the-time-goes table from py-spy's raw (collapsed) stacks.

py-spy writes either an SVG or collapsed stacks, not both; the table needs the stacks, so the SVG is drawn here
from them (small: frames under 0.2 % of the samples are left out). Each sample is put in one category by its
stack (`CATEGORIES`, first match wins), so the categories add up to the analysis's samples. py-spy samples a
thread that is runnable, on a CPU or waiting for one: on a loaded machine "sampled s" exceeds CPU seconds, so
read the shares, and take CPU seconds from the run itself (/usr/bin/time, or the manifest's cpu_seconds).

    py-spy record --native --subprocesses -r 50 --format raw -o known_answers.txt -- \
        python -m astrostats.analyze known_answers --out /tmp/x
    python benchmarks/profiles/flame.py known_answers.txt [more.txt ...] --svg-dir benchmarks/profiles
"""
from __future__ import annotations

import argparse
import html
import re
from collections import Counter
from pathlib import Path

# (category, where to look, pattern): "stack" matches any frame, "leaf" the innermost one
CATEGORIES = (
    ("start-up (imports)", "stack", r"_find_and_load|_handle_fromlist"),
    ("model loading", "stack", r"from_pretrained|load_smollm2|load_minilm|load_model|gguf|safetensors|load_vit|"
                               r"read_config|language_model_shape"),
    ("figures", "stack", r"matplotlib|report/figures"),
    ("fitting (statsmodels/scipy)", "stack", r"statsmodels/|scipy/optimize|scipy/linalg|scipy/stats/_continuous|"
                                             r"scipy/stats/_stats_py|scipy/special"),
    ("pandas (tables)", "stack", r"pandas/"),
    ("GEMM", "leaf", r"gemm|sgemm|dgemm|mkl_blas|mkldnn|dnnl|brgemm|openblas|matmul|addmm|bmm|_dot|cblas"),
    ("exp", "leaf", r"exp|Sleef|vml|softmax"),
    ("torch/numpy kernels (other)", "leaf", r"\.so\)|\(libc|\(libm|\(libgomp|\(libiomp"),
    ("Python", "leaf", r""),
)


#: a thread waiting, not computing (with --native py-spy counts a sleeping thread's samples; here they are dropped)
IDLE = re.compile(r"(clock_nanosleep|nanosleep|epoll_wait|__select|\bselect\b|\bpoll\b|pthread_cond_(timed)?wait|"
                  r"futex|sem_(timed)?wait|do_futex_wait|__GI___poll)")


def read_stacks(path: Path) -> Counter:
    """Samples per stack, sleeping threads left out (the memory-trimming thread's sleep, pool waits)."""
    stacks: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit() and not IDLE.search(stack.rsplit(";", 1)[-1]):
            stacks[stack] += int(count)
    return stacks


def category(frames: list[str]) -> str:
    for name, where, pattern in CATEGORIES:
        text = frames[-1] if where == "leaf" else ";".join(frames)
        if re.search(pattern, text, flags=re.IGNORECASE):
            return name
    return "Python"


def categories(stacks: Counter) -> Counter:
    totals: Counter = Counter()
    for stack, count in stacks.items():
        totals[category(stack.split(";"))] += count
    return totals


def _short(frame: str) -> str:
    frame = re.sub(r"\(([^()]*/)?([^/()]+/[^/()]+)\)$", r"(\2)", frame)  # keep the last two path parts
    return re.sub(r"^process \d+:\"([^\"]{0,60})[^\"]*\"", r"process \1", frame)


def svg(stacks: Counter, title: str, width: int = 1200, row: int = 16, min_fraction: float = 0.002) -> str:
    """A flame graph (root at the bottom) as one SVG string; hover a frame for its samples."""
    tree: dict = {}
    for stack, count in stacks.items():
        node = tree
        for frame in stack.split(";"):
            child = node.setdefault(frame, [0, {}])
            child[0] += count
            node = child[1]
    total = sum(stacks.values()) or 1
    boxes: list[tuple[float, int, float, str, int]] = []

    def place(children: dict, x: float, depth: int) -> None:
        for frame, (count, grandchildren) in sorted(children.items()):
            w = width * count / total
            if count / total >= min_fraction:
                boxes.append((x, depth, w, frame, count))
                place(grandchildren, x, depth + 1)
            x += w

    place(tree, 0.0, 0)
    depth = max((box[1] for box in boxes), default=0) + 1
    height = (depth + 2) * row
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" '
             f'font-size="11"><text x="4" y="{row - 3}">{html.escape(title)} ({total} samples)</text>']
    for x, level, w, frame, count in boxes:
        y = height - (level + 1) * row
        hue = 20 + (hash(frame.split(" (")[0]) % 40)
        label = _short(frame)
        text = html.escape(label[: max(0, int(w / 6.6))])
        parts.append(f'<g><title>{html.escape(label)} ({count} samples, {100 * count / total:.1f} %)</title>'
                     f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row - 1}" fill="hsl({hue},90%,60%)"/>'
                     + (f'<text x="{x + 2:.1f}" y="{y + row - 4}">{text}</text>' if text else "") + "</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", nargs="+", type=Path, help="py-spy --format raw files, one per analysis")
    parser.add_argument("--svg-dir", type=Path, help="write <name>.svg here")
    parser.add_argument("--rate", type=float, default=50.0, help="py-spy's sampling rate (Hz)")
    args = parser.parse_args(argv)
    names = [name for name, _, _ in CATEGORIES]
    print("| analysis | sampled s | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for path in args.raw:
        stacks = read_stacks(path)
        totals = categories(stacks)
        seconds = sum(totals.values()) / args.rate
        shares = " | ".join(f"{100 * totals[name] / max(1, sum(totals.values())):.0f} %" for name in names)
        print(f"| {path.stem} | {seconds:.1f} | {shares} |")
        if args.svg_dir:
            args.svg_dir.mkdir(parents=True, exist_ok=True)
            (args.svg_dir / f"{path.stem}.svg").write_text(svg(stacks, path.stem))


if __name__ == "__main__":
    main()

"""Real astrocyte Ca2+ recordings: load them, measure their noise and events, calibrate a generative model.

What the available data can do: the culture snippets of Schroeder, Bassett & Meaney (Netw Neurosci 2022;
../shared/data/astrocyte-calcium, 20 frames/s, F/F0) carry no synaptic input, so they cannot test the
attention mapping; they calibrate the noise and event shape that the realistic circuit variants use
(astrostats.circuits.biophysics). Published figures for these files: baseline noise SD ~0.011 dF/F, event
SNR ~3.1, 10-90 % rise ~0.55 s, peak-to-half decay ~0.35 s.

Pipeline, the same for real and simulated traces (so biases cancel): per trace, dF/F = F / F0 - 1 with
F0 the median of the first ``baseline_s`` seconds; noise SD = SD of dF/F there; the trace smoothed with a
Gaussian of ``smoothing_s``; the event = its maximum after the baseline window; SNR = smoothed peak / noise
SD; 10-90 % rise and peak-to-half decay by linear interpolation on the smoothed trace. The model (AR(1)
baseline noise + one event of :func:`astrostats.circuits.biophysics.event_shape`) is calibrated by simulated
moments: its parameters are adjusted until the same pipeline gives the data's medians.
"""
from __future__ import annotations

import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
from scipy import stats
from scipy.ndimage import gaussian_filter1d

from astrostats.validation import InputError, check_float, check_int, fail

CALCIUM_DIR_ENV = "ASTROSTATS_CALCIUM_DIR"
#: the shared culture data: file -> (MATLAB variable, role)
REFERENCE_FILES = {"raw": ("raw_astrotrace_snippets.mat", "rawsnippets_col"),
                   "processed": ("processed_astrotracelib2.mat", "snippets_col")}
REFERENCE_RATE_HZ = 20.0
METRICS = ("noise_sd", "event_snr", "rise_time_s", "decay_time_s")
SUFFIXES = (".csv", ".npz", ".mat")


@dataclass(frozen=True)
class Recordings:
    """Ca2+ traces (each a 1-D float64 array of fluorescence, any baseline) at one sampling rate."""

    traces: tuple
    sampling_rate_hz: float
    source: str = ""

    @property
    def n_traces(self) -> int:
        return len(self.traces)


def calcium_data_dir(*, strict: bool = False) -> Path | None:
    """The shared culture data: $ASTROSTATS_CALCIUM_DIR, else ../shared/data/astrocyte-calcium beside the
    repository; None when absent (tests then skip). The files are read in place, never copied.

    A variable the user set that points nowhere is an input error, not a reason to run uncalibrated: an
    InputError when $ASTROSTATS_CALCIUM_DIR names no folder, and (``strict``, as a run asks) when the folder it
    names lacks the files."""
    override = os.environ.get(CALCIUM_DIR_ENV)
    candidate = Path(override) if override else Path(__file__).resolve().parents[3] / "shared" / "data" / "astrocyte-calcium"
    if override and not candidate.is_dir():
        raise fail(CALCIUM_DIR_ENV, "an existing folder with the astrocyte-calcium files (or leave it unset)", override)
    found = all((candidate / name).is_file() for name, _ in REFERENCE_FILES.values())
    if override and strict and not found:
        missing = [name for name, _ in REFERENCE_FILES.values() if not (candidate / name).is_file()]
        raise fail(CALCIUM_DIR_ENV, f"a folder holding {', '.join(missing)} (or leave it unset)", override)
    return candidate if found else None


def _as_traces(array, name: str) -> list[np.ndarray]:
    """A numeric 2-D array (one trace per row) or a cell / object array of 1-D arrays."""
    array = np.asarray(array)
    if array.dtype == object:
        items = [np.asarray(item, dtype=np.float64).ravel() for item in array.ravel()]
    elif array.ndim == 1:
        items = [array.astype(np.float64)]
    elif array.ndim == 2:
        items = [row.astype(np.float64) for row in array]
    else:
        raise fail(name, "a 1-D or 2-D numeric array or a cell array of traces", f"array of shape {array.shape}")
    return items


def _clean(items: list[np.ndarray], source: str) -> tuple:
    """Trailing NaN (ragged padding) is trimmed; any other non-finite value is an error naming the trace."""
    traces = []
    for index, trace in enumerate(items):
        finite = np.isfinite(trace)
        end = int(np.flatnonzero(finite)[-1]) + 1 if finite.any() else 0
        if end < 3 or not finite[:end].all():
            raise fail(f"{source}: trace {index}", "at least 3 finite samples (trailing NaN allowed)",
                       f"{int(finite.sum())} finite of {trace.size}")
        traces.append(trace[:end])
    if not traces:
        raise fail(source, "at least one trace", 0)
    return tuple(traces)


def load_recordings(path: str | Path, sampling_rate_hz: float, *, variable: str | None = None) -> Recordings:
    """Read traces from CSV (one trace per column, header optional, NaN-padded), NPZ or MATLAB .mat
    (``variable`` names the array; optional when the file holds exactly one)."""
    sampling_rate_hz = check_float("sampling_rate_hz", sampling_rate_hz, minimum=0.0, strict=True)
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise fail("path", f"a recording file ending in one of {list(SUFFIXES)}", str(path))
    if not path.is_file():
        raise fail("path", "an existing recording file", str(path))
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, header="infer")
            if not all(isinstance(c, str) and not _is_number(c) for c in frame.columns):
                frame = pd.read_csv(path, header=None)
            numeric = frame.apply(pd.to_numeric, errors="coerce")
            if numeric.isna().to_numpy().sum() > frame.isna().to_numpy().sum():
                raise fail(f"{path.name}", "numeric columns only (one trace per column)", "non-numeric entries")
            items = [column.to_numpy(np.float64) for _, column in numeric.items()]
        else:
            contents = (dict(np.load(path, allow_pickle=False)) if path.suffix.lower() == ".npz"
                        else {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")})
            if variable is None:
                if len(contents) != 1:
                    raise fail("variable", f"one of {sorted(contents)} (the file holds several)", variable)
                variable = next(iter(contents))
            if variable not in contents:
                raise fail("variable", f"one of {sorted(contents)}", variable)
            items = _as_traces(contents[variable], f"{path.name}:{variable}")
    except InputError:
        raise
    except (OSError, ValueError, IndexError, EOFError, NotImplementedError, TypeError, KeyError, zipfile.BadZipFile,
            scipy.io.matlab.MatReadError, pd.errors.ParserError, zlib.error, AttributeError, OverflowError,
            MemoryError, UnicodeDecodeError, RecursionError) as error:  # a damaged file: zlib.error from a .mat
        raise InputError(f"path: expected a readable CSV, NPZ or MATLAB (v5/v7) recording, got {path.name!r} in "
                         f"{str(path.parent)!r} ({type(error).__name__}: {str(error)[:80]})") from None
    return Recordings(_clean(items, path.name), sampling_rate_hz, str(path) + (f":{variable}" if variable else ""))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_reference_data(directory: Path | None = None) -> dict[str, Recordings]:
    """The shared culture data ({'raw', 'processed'}), or an InputError when the folder is absent."""
    directory = directory or calcium_data_dir()
    if directory is None:
        raise fail(CALCIUM_DIR_ENV, "a folder with the astrocyte-calcium files", None)
    return {role: load_recordings(Path(directory) / name, REFERENCE_RATE_HZ, variable=variable)
            for role, (name, variable) in REFERENCE_FILES.items()}


# ---------------------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------------------

def _crossing(values: np.ndarray, level: float, rising: bool) -> float:
    """Fractional index where ``values`` (monotone walk from its start) first crosses ``level``."""
    below = values < level if rising else values > level
    hits = np.flatnonzero(~below)
    if hits.size == 0 or hits[0] == 0:
        return math.nan
    j = hits[0]
    return j - 1 + (level - values[j - 1]) / (values[j] - values[j - 1])


def measure_trace(trace: np.ndarray, rate: float, baseline_s: float, smoothing_s: float) -> dict:
    """noise SD, SNR, rise and decay of one trace, with a status per metric (ok / censored / insufficient)."""
    n_base = int(round(baseline_s * rate))
    f0 = float(np.median(trace[:n_base]))
    if not math.isfinite(f0) or f0 <= 0:  # dF/F needs a positive baseline: no metric of this trace is usable
        return {metric: (math.nan, "insufficient_data") for metric in METRICS + ("peak_time_s",)}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dff = trace / f0 - 1.0
    noise = float(np.std(dff[:n_base], ddof=1))  # a flat baseline (0) has no SNR: NaN below, flagged by the caller
    smooth = gaussian_filter1d(dff, smoothing_s * rate, mode="nearest") if smoothing_s > 0 else dff
    peak = n_base + int(np.argmax(smooth[n_base:]))
    base = float(np.median(smooth[:n_base]))
    amplitude = smooth[peak] - base
    snr = amplitude / noise if noise > 0 else math.nan
    result = {"noise_sd": (noise, "ok"), "event_snr": (snr, "ok"), "peak_time_s": (peak / rate, "ok")}
    if amplitude <= 0:
        result.update(rise_time_s=(math.nan, "insufficient_data"), decay_time_s=(math.nan, "insufficient_data"))
        return result
    before = smooth[: peak + 1][::-1]  # walk back from the peak
    t10 = _crossing(before, base + 0.1 * amplitude, rising=False)
    t90 = _crossing(before, base + 0.9 * amplitude, rising=False)
    result["rise_time_s"] = ((t10 - t90) / rate, "ok") if math.isfinite(t10) else (math.nan, "insufficient_data")
    half = _crossing(smooth[peak:], base + 0.5 * amplitude, rising=False)
    result["decay_time_s"] = (half / rate, "ok") if math.isfinite(half) else ((len(trace) - 1 - peak) / rate, "censored")
    return result


def measure_events(recordings: Recordings, *, baseline_s: float = 1.0, smoothing_s: float = 0.05) -> pd.DataFrame:
    """One row per (trace, metric): ``trace_id, metric, value, status``. A censored decay (no half-crossing
    before the trace ends) keeps the time to the end, a lower bound; an event without a 10 % crossing before
    its peak has no rise time (status insufficient_data, value NaN, excluded from summaries)."""
    rate = recordings.sampling_rate_hz
    baseline_s = check_float("baseline_s", baseline_s, minimum=0.0, strict=True)
    smoothing_s = check_float("smoothing_s", smoothing_s, minimum=0.0)
    n_base = int(round(baseline_s * rate))
    if n_base < 3:
        raise fail("baseline_s", f"at least 3 samples at {rate:g} Hz", baseline_s)
    rows = []
    for index, trace in enumerate(recordings.traces):
        if trace.size < n_base + 3:
            rows.append({"trace_id": index, "metric": "noise_sd", "value": math.nan, "status": "insufficient_data"})
            continue
        for metric, (value, status) in measure_trace(trace, rate, baseline_s, smoothing_s).items():
            if not math.isfinite(value):  # never a non-finite value marked usable
                value, status = math.nan, "insufficient_data" if status == "ok" else status
            rows.append({"trace_id": index, "metric": metric, "value": value, "status": status})
    return pd.DataFrame(rows)


def summarise(measurements: pd.DataFrame, *, n_resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per metric: the median with a percentile-bootstrap 95 % CI (scipy.stats.bootstrap), its bootstrap SE,
    the 10/25/75/90 % quantiles and n; a metric with fewer than 5 usable traces is flagged."""
    rows = []
    for metric in METRICS + ("peak_time_s",):
        values = measurements.loc[(measurements["metric"] == metric) & measurements["value"].notna(), "value"].to_numpy()
        row = {"metric": metric, "n": int(values.size), "method": "median, percentile bootstrap"}
        if values.size < 5:
            rows.append(row | {"status": "insufficient_data", "reason": f"{values.size} usable traces (< 5)"})
            continue
        boot = stats.bootstrap((values,), np.median, n_resamples=n_resamples, method="percentile",
                               random_state=np.random.default_rng(seed))
        q10, q25, q75, q90 = np.quantile(values, [0.1, 0.25, 0.75, 0.9])
        rows.append(row | {"statistic": float(np.median(values)), "ci_low": boot.confidence_interval.low,
                           "ci_high": boot.confidence_interval.high, "standard_error": boot.standard_error,
                           "q10": q10, "q25": q25, "q75": q75, "q90": q90, "status": "ok", "reason": ""})
    return pd.DataFrame(rows)


def baseline_noise_pool(recordings: Recordings, baseline_s: float = 1.0) -> np.ndarray:
    """Standardised baseline residuals (each trace's dF/F minus its baseline mean, over its SD), pooled: the
    real noise's shape, for resampling into the circuit (biophysics.noise_factors)."""
    n_base = int(round(check_float("baseline_s", baseline_s, minimum=0.0, strict=True) * recordings.sampling_rate_hz))
    pieces = []
    for trace in recordings.traces:
        window = trace[:n_base] / np.median(trace[:n_base]) - 1.0
        if window.size >= 3 and window.std(ddof=1) > 0:
            pieces.append((window - window.mean()) / window.std(ddof=1))
    if not pieces:
        raise fail("recordings", f"traces with at least 3 baseline samples in {baseline_s} s", recordings.source)
    return np.concatenate(pieces)


# ---------------------------------------------------------------------------------------------------------
# The generative model and its calibration by simulated moments
# ---------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EventModel:
    """One event on AR(1) baseline noise, per-trace log-normal spread in every parameter.

    Medians: ``noise_sd`` (dF/F), ``event_snr`` (true peak / noise SD), ``rise_s`` (10-90 %), ``decay_s``
    (peak to half); ``*_log_sd`` their spreads across traces (natural log); ``noise_ar1`` the lag-1
    autocorrelation of the noise; ``peak_times_s`` resampled for the event's position.
    """

    noise_sd: float
    event_snr: float
    rise_s: float
    decay_s: float
    noise_log_sd: float = 0.0
    snr_log_sd: float = 0.0
    rise_log_sd: float = 0.0
    decay_log_sd: float = 0.0
    noise_ar1: float = 0.0
    peak_times_s: tuple = (2.0,)
    n_frames: int = 81
    sampling_rate_hz: float = REFERENCE_RATE_HZ

    def __post_init__(self):
        for name in ("noise_sd", "event_snr", "rise_s", "decay_s", "sampling_rate_hz"):
            check_float(name, getattr(self, name), minimum=0.0, strict=True)
        for name in ("noise_log_sd", "snr_log_sd", "rise_log_sd", "decay_log_sd"):
            check_float(name, getattr(self, name), minimum=0.0)
        check_float("noise_ar1", self.noise_ar1, minimum=-0.99, maximum=0.99)
        check_int("n_frames", self.n_frames, minimum=3)


def simulate_recordings(model: EventModel, n_traces: int, seed: int = 0) -> Recordings:
    """Traces F/F0 = 1 + event + AR(1) noise from ``model``, reproducible from ``seed``."""
    import torch

    from astrostats.circuits.biophysics import event_shape

    n_traces = check_int("n_traces", n_traces, minimum=1)
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    rate, n = model.sampling_rate_hz, model.n_frames

    def lognormal(median, log_sd):
        return median * np.exp(log_sd * rng.standard_normal(n_traces))

    noise_sd = lognormal(model.noise_sd, model.noise_log_sd)
    snr, rise, decay = (lognormal(model.event_snr, model.snr_log_sd), lognormal(model.rise_s, model.rise_log_sd),
                        lognormal(model.decay_s, model.decay_log_sd))
    peaks = rng.choice(np.asarray(model.peak_times_s, dtype=np.float64), n_traces)
    innovations = rng.standard_normal((n_traces, n)) * math.sqrt(1 - model.noise_ar1**2)
    noise = np.empty((n_traces, n))
    noise[:, 0] = rng.standard_normal(n_traces)
    for t in range(1, n):
        noise[:, t] = model.noise_ar1 * noise[:, t - 1] + innovations[:, t]
    times = torch.arange(n, dtype=torch.float64) / rate
    events = np.stack([event_shape(times, float(p), float(r), float(d)).numpy() for p, r, d in zip(peaks, rise, decay)])
    traces = 1.0 + (snr * noise_sd)[:, None] * events + noise_sd[:, None] * noise
    return Recordings(tuple(traces), rate, f"simulated(seed={seed})")


def _log_spread(values: np.ndarray) -> float:
    """Robust SD of log values: IQR / 1.349."""
    logs = np.log(values[values > 0])
    return float(stats.iqr(logs) / 1.349) if logs.size >= 5 else 0.0


def _medians(measurements: pd.DataFrame) -> dict[str, float]:
    usable = measurements[measurements["value"].notna()]
    return {metric: float(usable.loc[usable["metric"] == metric, "value"].median()) for metric in METRICS}


def calibrate_event_model(recordings: Recordings, *, shape: Recordings | None = None, baseline_s: float = 1.0,
                          smoothing_s: float = 0.05, shape_baseline_s: float = 0.25, n_simulated: int = 1000,
                          iterations: int = 10, seed: int = 0) -> tuple[EventModel, pd.DataFrame]:
    """Calibrate the model on ``recordings`` (raw traces) by simulated moments: repeat theta *= data median /
    simulated median (same pipeline, same simulation seed each round) for the fitted parameters.

    With ``shape`` (smoothed event snippets of the same kind of cells, e.g. the processed culture library),
    the event's rise and decay and their spreads are measured there (no smoothing, baseline
    ``shape_baseline_s``) and only noise SD and SNR are fitted, so the raw traces' rise and decay medians are
    predictions the model can fail; without it all four are fitted. Noise AR(1) and spreads come from the
    data directly. Returns the model and a tidy table ``metric, data, model, relative_gap, fitted``.
    """
    measurements = measure_events(recordings, baseline_s=baseline_s, smoothing_s=smoothing_s)
    target = _medians(measurements)
    for metric, value in target.items():
        if not (math.isfinite(value) and value > 0):
            raise fail("recordings", f"traces with a measurable {metric} (median > 0)", value)
    values = {m: measurements.loc[(measurements["metric"] == m) & measurements["value"].notna(), "value"].to_numpy()
              for m in METRICS + ("peak_time_s",)}
    rise, decay = target["rise_time_s"], target["decay_time_s"]
    rise_spread, decay_spread = _log_spread(values["rise_time_s"]), _log_spread(values["decay_time_s"])
    fitted = {"noise_sd": "noise_sd", "event_snr": "event_snr", "rise_time_s": "rise_s", "decay_time_s": "decay_s"}
    if shape is not None:
        kinetics = measure_events(shape, baseline_s=shape_baseline_s, smoothing_s=0.0)
        kinetics = kinetics[kinetics["value"].notna() & (kinetics["status"] == "ok")]
        rise_values = kinetics.loc[kinetics["metric"] == "rise_time_s", "value"].to_numpy()
        decay_values = kinetics.loc[kinetics["metric"] == "decay_time_s", "value"].to_numpy()
        if rise_values.size < 5 or decay_values.size < 5:
            raise fail("shape", "at least 5 snippets with a measurable rise and decay", (rise_values.size, decay_values.size))
        rise, decay = float(np.median(rise_values)), float(np.median(decay_values))
        rise_spread, decay_spread = _log_spread(rise_values), _log_spread(decay_values)
        fitted = {"noise_sd": "noise_sd", "event_snr": "event_snr"}
    n_base = int(round(baseline_s * recordings.sampling_rate_hz))
    ar1 = float(np.median([np.corrcoef(t[: n_base - 1], t[1:n_base])[0, 1] for t in recordings.traces if t.size >= n_base]))
    model = EventModel(noise_sd=target["noise_sd"], event_snr=target["event_snr"], rise_s=rise, decay_s=decay,
                       noise_log_sd=_log_spread(values["noise_sd"]), snr_log_sd=_log_spread(values["event_snr"]),
                       rise_log_sd=rise_spread, decay_log_sd=decay_spread, noise_ar1=min(max(ar1, -0.9), 0.9),
                       peak_times_s=tuple(float(x) for x in values["peak_time_s"]),
                       n_frames=int(np.median([t.size for t in recordings.traces])),
                       sampling_rate_hz=recordings.sampling_rate_hz)

    def simulated_medians(current: EventModel) -> dict[str, float]:
        return _medians(measure_events(simulate_recordings(current, n_simulated, seed), baseline_s=baseline_s,
                                       smoothing_s=smoothing_s))

    for _ in range(iterations):
        simulated = simulated_medians(model)
        updates = {field: getattr(model, field) * target[metric] / simulated[metric] for metric, field in fitted.items()
                   if math.isfinite(simulated[metric]) and simulated[metric] > 0}
        model = EventModel(**(vars(model) | updates))
    simulated = simulated_medians(model)
    report = pd.DataFrame({"metric": list(METRICS), "data": [target[m] for m in METRICS],
                           "model": [simulated[m] for m in METRICS], "fitted": [m in fitted for m in METRICS]})
    report["relative_gap"] = report["model"] / report["data"] - 1.0
    return model, report

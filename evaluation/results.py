"""Durable per-utterance records, merging and summaries of an evaluation run.

Every finished utterance is one small JSON file `{split}_items/{index:07d}.json`,
written to a temporary file, fsynced and renamed; an utterance that failed is kept as
`{index:07d}.failed.json` instead, so that the next run retries it (and a success
there replaces the failure). A rename is atomic, so a
killed run leaves either the whole record or none; workers write disjoint files
and need no lock; resuming is listing the folder. (An append-only JSONL shared
by processes would need locking and could end in a torn line after a kill.)
"""

import json
import math
import os
import statistics
import tempfile
from pathlib import Path

# Fields that depend on the machine's speed or load; everything else in a record
# is a function of (checkpoint, data, settings, seed, index).
TIMING_FIELDS = ("run_time_s", "metric_time_s", "rtf")

# Per-utterance scalars and per-source lists that the summary aggregates.
SUMMARY_FIELDS = (
    "si_sdr",
    "si_sir",
    "si_sar",
    "pesq",
    "estoi",
    "stoi",
    "mix_si_sdr",
    "si_sdr_improvement",
    "sdr",  # music: BSS Eval v4 (median over 1-s windows per track)
    "isr",
    "sir",
    "sar",
    "mix_sdr",
    "nfe",
    "run_time_s",
    "rtf",
)


def atomic_write_json(path, obj):
    """Write JSON so that readers only ever see the old or the complete new file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StoreMismatchError(RuntimeError):
    """The result folder holds records made with other settings or inputs."""


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class ItemStore:
    """The folder of finished per-utterance records of one split.

    `fingerprint` describes what produced the records (checkpoint, sampler and
    metric settings, seed); records of another configuration are never mixed in.
    """

    def __init__(self, result_dir, split, fingerprint):
        self.dir = Path(result_dir) / f"{split}_items"
        self.fingerprint = fingerprint

    def open(self, overwrite=False):
        """Create the folder, or check that existing records match the fingerprint."""
        meta = self.dir / "run.json"
        if overwrite and self.dir.exists():
            for p in self.dir.iterdir():
                p.unlink()
        if meta.exists():
            with open(meta) as f:
                old = json.load(f)
            if old != self.fingerprint:
                a, b = _flatten(old), _flatten(self.fingerprint)
                diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
                raise StoreMismatchError(
                    f"{self.dir} holds records of another run (differs in {diff}); "
                    "use --overwrite or another --output-dir/--tag")
        else:
            atomic_write_json(meta, self.fingerprint)
        return self

    def path(self, index, failed=False):
        return self.dir / f"{index:07d}{'.failed' if failed else ''}.json"

    def _indices(self, suffix):
        if not self.dir.exists():
            return set()
        return {int(p.name[:7]) for p in self.dir.glob(f"[0-9]*{suffix}")
                if p.name[:7].isdigit() and len(p.name) == 7 + len(suffix)}

    def done(self):
        """Indices with a successful record on disk (failed ones are retried)."""
        return self._indices(".json")

    def failed(self):
        """Indices whose last attempt failed."""
        return self._indices(".failed.json") - self.done()

    def write(self, record):
        index, ok = record["index"], record.get("status") == "ok"
        atomic_write_json(self.path(index, failed=not ok), _json_safe(record))
        if ok:
            self.path(index, failed=True).unlink(missing_ok=True)

    def read(self, indices):
        """Records of `indices` (successes, else the failure), sorted by index; fails if
        one has neither."""
        done, failed = self.done(), self.failed()
        missing = sorted(set(indices) - done - failed)
        if missing:
            raise RuntimeError(f"{len(missing)} record(s) missing in {self.dir}: {missing[:10]}")
        records = []
        for i in sorted(indices):
            with open(self.path(i, failed=i not in done)) as f:
                records.append(json.load(f))
        return records


def _json_safe(obj):
    """Non-finite floats become None: JSON has no NaN, and they must not be averaged."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _stats(values, n_missing):
    valid = [v for v in values if v is not None]
    return {
        "mean": statistics.fmean(valid) if valid else None,
        "median": statistics.median(valid) if valid else None,
        "n_valid": len(valid),
        "n_missing": n_missing + len(values) - len(valid),
    }


def summarize(records, settings):
    """Means and medians per metric over the valid values, with counts.

    Per-source metrics are pooled over (utterance, source) and also given per
    source name. Utterances that failed count as missing for every metric.
    """
    ok = [r for r in records if r.get("status") == "ok"]
    n_failed = len(records) - len(ok)
    metrics = {}
    for field in SUMMARY_FIELDS:
        if not any(field in r for r in ok):
            continue
        values = [r.get(field) for r in ok]
        if any(isinstance(v, list) for v in values):
            names = ok[0]["source_names"]
            n_sources = len(names)
            pooled = [x for v in values for x in (v if v is not None else [None] * n_sources)]
            entry = _stats(pooled, n_failed * n_sources)
            entry["per_source"] = {
                name: _stats([v[k] if v is not None else None for v in values], n_failed)
                for k, name in enumerate(names)
            }
        else:
            entry = _stats(values, n_failed)
        metrics[field] = entry
    return {
        "n_items": len(records),
        "n_ok": len(ok),
        "n_failed": n_failed,
        "failed": [{"index": r["index"], "name": r.get("name"), "error": r.get("error")}
                   for r in records if r.get("status") != "ok"],
        "n_with_missing": sum(1 for r in ok if r.get("missing")),
        "metrics": metrics,
        **settings,
    }


def write_results(result_dir, split, records, settings):
    """Write `{split}.json` (records) and `{split}_summary.json`, both atomically."""
    result_dir = Path(result_dir)
    summary = summarize(records, settings)
    atomic_write_json(result_dir / f"{split}.json", records)
    atomic_write_json(result_dir / f"{split}_summary.json", summary)
    return summary


def strip_timing(record):
    """A record without its timing fields, for comparing runs."""
    return {k: v for k, v in record.items() if k not in TIMING_FIELDS}


def _cell(entry, name, stat):
    value = ((entry or {}).get("per_source") or {}).get(name, {}).get(stat)
    return f"{value:8.2f}" if value is not None else f"{'-':>8s}"


def format_stem_table(summary):
    """Per-source table of a music summary (SDR columns are medians over tracks)."""
    m = summary["metrics"]
    names = list((m.get("si_sdr") or m.get("sdr") or {}).get("per_source") or {})
    columns = [("sdr", "median", "SDR"), ("mix_sdr", "median", "mix SDR"),
               ("si_sdr", "median", "SI-SDR"), ("mix_si_sdr", "median", "mix SI-SDR"),
               ("si_sdr", "mean", "SI-SDR avg")]
    lines = ["  BSS Eval v4 SDR: median over 1-s windows per track, median over tracks (dB)",
             f"  {'source':12s}" + "".join(f"{title:>11s}" for _, _, title in columns)]
    for name in names:
        lines.append(f"  {name:12s}" + "".join(f"   {_cell(m.get(f), name, st)}"
                                               for f, st, _ in columns))
    return lines


def format_summary(split, summary):
    """A few human-readable lines of a summary (with a per-stem table for music)."""
    lines = [f"{split}: {summary['n_ok']}/{summary['n_items']} utterances scored"]
    if summary["n_failed"]:
        lines.append(f"  {summary['n_failed']} failed (rerun the same command to retry them):")
        lines += [f"    {f['index']} {f['name']}: {f['error']}" for f in summary["failed"][:10]]
        if summary["n_failed"] > 10:
            lines.append(f"    ... and {summary['n_failed'] - 10} more in the summary file")
    for name, entry in summary["metrics"].items():
        if entry["mean"] is not None:
            lines.append(f"  {name:20s} mean {entry['mean']:8.3f}  median {entry['median']:8.3f}"
                         f"  (valid {entry['n_valid']}, missing {entry['n_missing']})")
    if "sdr" in summary["metrics"] or "mix_sdr" in summary["metrics"]:
        lines += format_stem_table(summary)
    return "\n".join(lines)

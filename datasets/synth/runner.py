"""Per-item seeding and an ordered (optionally parallel) item loop.

Every random choice of an item comes from a generator seeded by
(seed, corpus, split, index), so items can be made in any order, by any
number of processes, or partially, and still give the same bytes.
"""

import multiprocessing
import zlib
from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm


def _key_int(key) -> int:
    # Python's hash() of str is salted per process; crc32 is stable.
    if isinstance(key, (int, np.integer)):
        return int(key)
    return zlib.crc32(str(key).encode())


def item_rng(seed: int, *keys) -> np.random.Generator:
    """Random generator determined only by `seed` and `keys`."""
    return np.random.default_rng([int(seed)] + [_key_int(k) for k in keys])


def run_items(
    fn: Callable, items: Sequence, workers: int = 1, desc: str = "", progress: bool = True
) -> list:
    """Apply `fn` to every item, in order, with a tqdm bar; `workers > 1` uses processes."""
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="item")
    results = []
    try:
        if workers <= 1 or len(items) <= 1:
            for it in items:
                results.append(fn(it))
                bar.update()
        else:
            # fork reuses the imported modules and starts fast; eSpeak is loaded
            # per utterance, so the workers share no synthesis state.
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with multiprocessing.get_context(method).Pool(workers) as pool:
                for res in pool.imap(fn, items, chunksize=1):
                    results.append(res)
                    bar.update()
    finally:
        bar.close()
    return results

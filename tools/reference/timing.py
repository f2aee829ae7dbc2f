"""Forward times of a reference model's towers, for `cargo xtask parity` to print next to ours.

`write_tower_timing(out, image_fn, text_fn)` runs each callable once untimed, then once timed, with
PyTorch's threads = $RAYON_NUM_THREADS or all cores (what the Rust side uses), and writes
`out/timing.json` ({"image_s", "text_s", "threads", "torch"}).
"""
import json
import os
import time

import torch


def write_tower_timing(out, image_fn, text_fn):
    threads = int(os.environ.get("RAYON_NUM_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    result = {"threads": threads, "torch": torch.__version__}
    with torch.inference_mode():
        for key, fn in (("image_s", image_fn), ("text_s", text_fn)):
            fn()
            t0 = time.perf_counter()
            fn()
            result[key] = time.perf_counter() - t0
    with open(os.path.join(out, "timing.json"), "w") as f:
        json.dump(result, f)
    print(f"PyTorch forward: image {result['image_s']:.2f} s, text {result['text_s']:.2f} s "
          f"({threads} threads)")

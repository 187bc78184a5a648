"""Time raw CoNLL-2003 -> DatasetDict, cold (fresh temp cache): builder, and build command + load_dataset.

Usage: python -m bench.bench_loader [RAW_DIR]   (default: ../shared/data/conll2003)
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAW = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "conll2003"


def main():
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_DATASETS_CACHE"] = f"{tmp}/hf_cache"
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        t0 = time.perf_counter()
        import datasets

        from conll2003_loader import load_conll

        t1 = time.perf_counter()
        ds = load_conll(data_dir=RAW, cache_dir=f"{tmp}/builder_cache")
        t2 = time.perf_counter()
        print(f"import datasets+conll2003_loader: {t1 - t0:.2f} s")
        print(
            f"builder download_and_prepare+as_dataset: {t2 - t1:.2f} s ({', '.join(f'{k} {len(v)}' for k, v in ds.items())})"
        )
        t3 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "conll2003_loader",
                "build",
                "--data-dir",
                str(RAW),
                "--output",
                f"{tmp}/out",
                "--cache-dir",
                f"{tmp}/build_cache",
            ],
            check=True,
            capture_output=True,
        )
        t4 = time.perf_counter()
        loaded = datasets.load_dataset(f"{tmp}/out", cache_dir=f"{tmp}/load_cache")
        t5 = time.perf_counter()
        assert loaded["train"].features == ds["train"].features
        print(f"build command (subprocess, incl. interpreter start): {t4 - t3:.2f} s")
        print(f"load_dataset(output): {t5 - t4:.2f} s")
        print(f"total raw -> DatasetDict via builder: {t2 - t0:.2f} s; via build + load_dataset: {t5 - t3:.2f} s")


if __name__ == "__main__":
    main()

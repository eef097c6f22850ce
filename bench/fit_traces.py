"""Recompute the committed job-size fit from the Alibaba openb trace.

Usage: python bench/fit_traces.py [TRACES_DIR]   (default ../shared/traces)

Prints the numbers that ``src/suanli/workload/data/alibaba_openb_fit.toml`` ships, so the
fit can be checked and refreshed; the project itself never reads the trace at run time.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np


def main(traces: Path) -> int:
    path = traces / "alibaba_openb_pod_list_default.csv"
    if not path.exists():
        print(f"{path}: not found (the traces live in ../shared/traces)", file=sys.stderr)
        return 2
    counts: Counter[int] = Counter()
    lives: list[float] = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            gpus = int(row["num_gpu"])
            if gpus == 0:
                continue
            counts[gpus] += 1
            start = float(row["scheduled_time"] or row["creation_time"])
            life = float(row["deletion_time"]) - start
            if life > 0:
                lives.append(life)
    total = sum(counts.values())
    values = sorted(counts)
    print(f"pods with GPUs: {total}")
    print(f"values = {values}")
    print(f"weights = {[round(counts[v] / total, 5) for v in values]}")
    logs = np.log(np.array(lives))
    print(f"log_mean = {logs.mean():.4f}\nlog_std = {logs.std():.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("../shared/traces")))

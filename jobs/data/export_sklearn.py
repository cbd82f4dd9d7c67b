"""Export scikit-learn's bundled wine and diabetes sets to the Parquet files beside this script.

The tabular jobs (jobs/wine.yaml, jobs/diabetes.yaml) read these files as any user's file would
be read. Re-run to regenerate them; the output is deterministic:

    python jobs/data/export_sklearn.py
"""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.datasets import load_diabetes, load_wine

HERE = Path(__file__).resolve().parent


def export(frame, name: str) -> Path:
    out = HERE / f"{name}.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out, compression="zstd")
    return out


if __name__ == "__main__":
    wine = load_wine(as_frame=True).frame  # 178 rows, 13 numeric features, target: class 0/1/2 (int)
    diabetes = load_diabetes(as_frame=True, scaled=False).frame  # 442 rows, 10 features, target: float
    for frame, name in ((wine, "wine"), (diabetes, "diabetes")):
        path = export(frame, name)
        print(f"{path}: {len(frame)} rows, columns {list(frame.columns)}")

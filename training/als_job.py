"""The ALS training job for spark-submit (the same job `recstream train` runs in-process).

    PYSPARK_PYTHON=.venv/bin/python PYSPARK_DRIVER_PYTHON=.venv/bin/python \\
    .venv/bin/spark-submit --master local[2] \\
        --jars "$(ls .local/spark-jars/*.jar | paste -sd,)" \\
        --driver-memory 4g --driver-java-options -XX:TieredStopAtLevel=1 \\
        training/als_job.py --rank 64 --max-iter 10

(The job sets Kryo, checkpoint cleaning and OPENBLAS_NUM_THREADS=1 for executors itself; what only
spark-submit can set - jars, driver memory, JVM options - is in the flags above. `recstream train`
sets those too when it starts the JVM.)

On a cluster use `--master spark://host:7077` (the recstream package must be installed on the
driver; the executors run only JVM code: there are no Python UDFs). Every `recstream train` flag
works here too (`--help`).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from recstream.training import cli

    parser = argparse.ArgumentParser(
        prog="spark-submit training/als_job.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv), launched_by_spark_submit=True)


if __name__ == "__main__":
    sys.exit(main())

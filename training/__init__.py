"""The Spark jobs: ALS training from the interactions log (run with spark-submit or `recstream train`)."""

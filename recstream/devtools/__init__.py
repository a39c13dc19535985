"""Development tooling: local services, a local cluster of worker processes, the demo, and the
from-scratch reference computation the exactness tests and benchmarks compare with."""

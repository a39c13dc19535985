"""The streaming app: the Faust app object, its topic channels, the per-batch table cache, the commit
gate, the sinks and the per-process resources its agents share. The agents themselves are in
`recstream.agents` (./agents) and the tables in `recstream.tables` (./tables); `recstream.streaming.worker`
assembles them into a worker."""

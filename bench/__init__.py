"""mof.bench: the mof-bench tool (speed against the memory floor). Not part of mof.runtime,
which a desktop app embeds: this package runs worker processes, probes the machine and plots."""

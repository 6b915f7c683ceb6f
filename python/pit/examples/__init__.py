"""Handler modules shipped for demos, smoke tests and benchmarks (``app = "pit.examples.echo"``)."""

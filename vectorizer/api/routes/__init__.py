"""HTTP routes, one module per resource: service probes, collections, point writes, reads, queries."""

"""Wire formats of the ecosystem revopipe talks to (OTLP, Prometheus exposition): shared by
the plugins that speak them, so a source and a sink of one protocol agree on its mapping."""

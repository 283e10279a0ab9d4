"""Ray Serve applications: the opinions HTTP API (``demoscope.serve.app``)."""

"""What runs beside the worker, never inside it: the traffic simulator, the demo, the
sample events and the launcher of the bundled broker (tansu). The worker imports none of
it; a production deployment can leave it unused."""

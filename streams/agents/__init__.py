"""The Faust agents of a worker, one module each; ``cxpulse.streams.app`` registers them."""

"""The Faust agents of a worker, one module each; ``streams.app`` registers them."""

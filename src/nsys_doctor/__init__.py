"""nsys-doctor: why is my GPU inference slow? Reads Nsight Systems profiles, finds the requests, names the bottleneck."""
__version__ = "0.1.0"

"""xdpgate's controller: loads the XDP data path, applies policy, classifies flows."""

__version__ = "0.1.0"

"""Our own tracr-compatible RASP compiler (independent implementation of DeepMind tracr's public API)."""

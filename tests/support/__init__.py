"""Helpers the tests share: real servers and processes, ground truth, waiting."""

"""Datasets, joint image/label transforms and dataset preparation."""

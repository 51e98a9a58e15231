"""Renderers of the CLI's human output: rich layouts apart from argument parsing."""

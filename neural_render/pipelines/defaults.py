"""Inference defaults shared by the pipelines and their command lines (torch-free: parsers import it cheaply)."""

#: temporal windows of the inverse pipeline: latent frames per window, and frames shared by neighbouring windows.
#: With 16-frame windows, overlap 8 keeps the window-boundary temporal error at the within-window level (the window
#: test of ``neural-render eval inverse``); overlap 4 did not.
INVERSE_WINDOW = 16
INVERSE_OVERLAP = 8

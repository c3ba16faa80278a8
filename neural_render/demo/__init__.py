"""The one-command demo (``neural-render demo``): its steps (``run``), its contact sheet (``sheet``), and the small
analytic scene (``scene``) used by tests and the web demo."""

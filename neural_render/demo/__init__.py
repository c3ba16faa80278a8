"""The one-command demo (``neural-render demo``) and the small analytic scene it renders."""

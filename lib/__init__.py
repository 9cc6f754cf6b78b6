"""Library of the DF-MVR reimplementation: face models, geometry, rendering, losses,
evaluation, preprocessing and I/O. Nothing here imports `models` or `data`."""

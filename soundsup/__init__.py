"""soundsup: learn visual features by predicting the sound around a video frame.

The package holds every algorithm of the workflow; the Snakemake rules only call into it.
"""

__version__ = "0.1.0"

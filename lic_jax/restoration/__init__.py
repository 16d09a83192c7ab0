"""Restoration around a standard codec (seed 004; docs/RESTORATION.md).

Submodules (imported on demand, so that importing one does not pull in the others):

* :mod:`.jpeg`     real JPEG / JPEG 2000 / WebP through Pillow, quality-factor estimation, input checks
* :mod:`.data`     40×40 patch pipeline with JPEG in worker threads and a measured input wait
* :mod:`.train`    ARCNN / ARCNN+ASPP training (optax), checkpoint + resume, evaluation, export
* :mod:`.restore`  shipped-weight selection by quality factor and ``lic restore``
"""

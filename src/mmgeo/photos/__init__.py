"""A photo's own metadata: where and when it was taken, from its EXIF, an ``.xmp`` sidecar or a GPX track.

:mod:`~mmgeo.photos.exif` reads the EXIF GPS IFD, capture time and camera; :mod:`~mmgeo.photos.xmp` reads
and writes XMP sidecars; :mod:`~mmgeo.photos.gpx` places a capture time on a GPX track; :mod:`~mmgeo.photos.location`
combines them into one answer per photo (a location with its source, or why there is none).
"""

"""GeoCLIP (Vivanco et al., NeurIPS 2023) re-implemented on the weights of the ``geoclip`` package.

Image side: a vision backbone (by default the CLIP ViT-L/14 vision tower with
its projection, ``openai/clip-vit-large-patch14`` exactly as the ``geoclip``
package uses it) followed by GeoCLIP's MLP (768 → 768 → 512). Location side:
three random-Fourier-feature capsules (σ = 1, 16, 256) over the Equal Earth
projection, summed. Probabilities are ``softmax(exp(logit_scale) · cos)`` over a
full GPS gallery, then top-k, as ``geoclip.GeoCLIP.predict`` does.

The MLP, location encoder, logit scale and the 100K gallery are read from the
installed ``geoclip`` package *files* (its modules are not imported). The
CLIP-L/14 weights come from the Hugging Face cache. Any registered image
encoder can replace the backbone (``backbone="efficientnet_lite0.in1k"``) with a
head trained on its features (``head=<path>``). Gallery location embeddings
are computed once per (gallery, weights) and cached in memory and on disk.

* :mod:`~mmgeo.encoders.geoclip.model`: the networks and :class:`GeoCLIPEncoder` (encode, predict);
* :mod:`~mmgeo.encoders.geoclip.gallery`: GPS galleries and their embedding cache folder;
* :mod:`~mmgeo.encoders.geoclip.pretrained`: released and trained weights, CLIP-L/14, registry entries.
"""

from mmgeo.cache import cache_dir
from mmgeo.encoders.geoclip.gallery import GALLERIES, GpsGallery, get_gallery, package_file
from mmgeo.encoders.geoclip.model import (
    EMBED_DIM,
    GeoCLIPEncoder,
    LocationEncoder,
    cache_slug,
    equal_earth,
    geoclip_mlp,
)
from mmgeo.encoders.geoclip.pretrained import ENTRY, LOCATION_ENTRY, head_backbone, load_head, released_parts

__all__ = [
    "EMBED_DIM",
    "ENTRY",
    "GALLERIES",
    "LOCATION_ENTRY",
    "GeoCLIPEncoder",
    "GpsGallery",
    "LocationEncoder",
    "cache_dir",
    "cache_slug",
    "equal_earth",
    "geoclip_mlp",
    "get_gallery",
    "head_backbone",
    "load_head",
    "package_file",
    "released_parts",
]

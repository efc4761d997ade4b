"""Photos into batches: decoded once where memory allows, read by a DataLoader otherwise.

photos = decode_all(samples)                         # None when they would not fit DECODED_BUDGET
loader = make_loader(samples, transform, 32, shuffle=True, epoch=3, seed=0, workers=0)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from flower_edge.runtime.image import load_image

from .data import Sample
from .distributed import Dist

log = logging.getLogger(__name__)


DECODED_BUDGET = 4 << 30
"""Bytes of decoded pixels that training keeps in memory to read each photo once (Flowers102's
train split at 256 px: 1.7 GB); a larger data set is decoded again on each pass."""


def decode_all(samples: Sequence[Sample], budget: int = DECODED_BUDGET, task=None) -> list[Image.Image] | None:
    """Every photo decoded once, in threads (Pillow decodes outside the GIL), for passes that read
    each photo several times; None, and nothing kept, once they would take more than ``budget``
    bytes of memory."""
    if _estimated_pixels(samples) * 3 > budget:
        log.info("the decoded photos would take over %d bytes; decoding on each pass", budget)
        return None
    images: list[Image.Image] = []
    used = 0
    progress = task("decoding photos once", len(samples)) if task else None
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for image in pool.map(lambda s: load_image(s.path), samples):
            used += image.width * image.height * 3
            if used > budget:
                log.info("the decoded photos would take over %d bytes; decoding on each pass", budget)
                return None
            images.append(image)
            if progress:
                progress.advance(1)
    if progress:
        progress.close()
    return images


def _estimated_pixels(samples: Sequence[Sample], probes: int = 64) -> float:
    """Pixels of all the photos, estimated from the headers of up to ``probes`` of them spread over
    the list (no decoding), so that a set far over the budget is not decoded up to it first."""
    if not samples:
        return 0
    step = max(1, len(samples) // probes)
    sizes = []
    for s in samples[::step][:probes]:
        try:
            with Image.open(s.path) as im:
                sizes.append(im.width * im.height)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return len(samples) * sum(sizes) / len(sizes) if sizes else 0


class ImageDataset(Dataset):
    """(image tensor, label) pairs; ``transform`` maps an RGB PIL image to a (3, H, W) tensor.
    ``images``, when given, are the samples' photos already decoded (``decode_all``)."""

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Image.Image], torch.Tensor],
        images: Sequence[Image.Image] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.images = images

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        s = self.samples[i]
        image = self.images[i] if self.images is not None else load_image(s.path)
        return self.transform(image), s.label


def make_loader(
    samples: Sequence[Sample],
    transform: Callable,
    batch_size: int,
    *,
    seed: int = 0,
    workers: int = 0,
    shuffle: bool = False,
    epoch: int = 0,
    world: Dist = Dist(),
    images: Sequence[Image.Image] | None = None,
) -> DataLoader:
    """Batches of (inputs, labels); shuffled anew each epoch, and dealt out to the ranks when distributed."""
    dataset = ImageDataset(samples, transform, images)
    pin = torch.cuda.is_available()
    if shuffle and world.enabled:  # a fresh global shuffle each epoch, dealt out to the ranks
        sampler = DistributedSampler(dataset, world.world, world.rank, shuffle=True, seed=seed)
        sampler.set_epoch(epoch)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin)
    generator = torch.Generator().manual_seed(seed + len(samples) + epoch) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=generator,
        drop_last=False,
        pin_memory=pin,
        persistent_workers=False,
    )

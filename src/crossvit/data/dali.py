"""decode=dali: NVIDIA DALI decodes each file's random-resized-crop region and resizes it.

The DataLoader's workers still read the files, in the sampler's order (DDP shards, repeated augmentation, mid-epoch
resume stay the DataModule's); DALI takes each batch's bytes through an external source. On a GPU its "mixed"
decoder runs the JPEG engines and CUDA (the fastest decoding measured for crossvit_9: docs/benchmarks.md, eighth
session); elsewhere its CPU backend, which the tests run. The crop draws timm's RandomResizedCrop distribution (area
8-100%, aspect ratio 3/4-4/3 log-uniform, 10 attempts) from DALI's own generator, seeded per run and rank: the order
of the data is exact on resume, the crops are not the uninterrupted run's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from crossvit.errors import ConfigError

# Share of the JPEGs sent to the GPU's hardware decoders (the rest: DALI's host threads). 1.0 decoded 19,953 img/s on
# an H200 against 17,009 at 0.9 (docs/benchmarks.md, eighth session, dali_probe).
HW_DECODER_LOAD = 1.0


def require_dali() -> None:
    """One line naming the fix where DALI is not installed; checked when decode=dali is chosen, before training."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        raise ConfigError(
            "data.decode=dali needs NVIDIA DALI (pip install nvidia-dali-cuda130; requirements.lock has it on "
            "Linux x86-64); or set data.decode=hybrid"
        ) from None


class DaliCropDecoder:
    """Encoded JPEGs (flat bytes and their lengths, as `collate_encoded` makes them) -> float32 [N, 3, size, size]
    crops (0-255, as the device augmentation takes them) on `device`, resized bicubic with antialiasing. `size=None`:
    uint8 HWC crops at their own sizes, a list (what the tests compare with timm's draws). A batch at a time (call),
    or a stream of batches with the next one decoding while the caller works on this one (`stream`)."""

    def __init__(self, size: int | None, batch_size: int, device: torch.device, seed: int, threads: int = 4) -> None:
        require_dali()
        from nvidia.dali import fn, pipeline_def, types

        self.gpu = device.type == "cuda"
        if self.gpu and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        self.device, self.size = device, size
        self.in_flight = 0  # batches fed whose crops are not taken yet
        self.held: deque[tuple[torch.Tensor, torch.cuda.Event]] = deque()  # DALI's outputs still being read (`take`)

        @pipeline_def
        def pipeline():
            files = fn.external_source(name="files", dtype=types.UINT8)
            decoder = dict(device="mixed", hw_decoder_load=HW_DECODER_LOAD) if self.gpu else dict(device="cpu")
            images = fn.decoders.image_random_crop(
                files,
                output_type=types.RGB,
                random_area=[0.08, 1.0],
                random_aspect_ratio=[3 / 4, 4 / 3],
                num_attempts=10,
                **decoder,
            )
            if size is not None:
                images = fn.resize(images, resize_x=size, resize_y=size, interp_type=types.INTERP_CUBIC, antialias=True)
            return images

        self.pipe = pipeline(
            batch_size=batch_size,
            num_threads=threads,
            device_id=device.index if self.gpu else None,
            seed=seed % 2**31,
            prefetch_queue_depth=1,
            exec_dynamic=True,  # runs queue as fed (`stream`); outputs reference-counted, handed to torch uncopied
        )
        self.pipe.build()

    def feed(self, data: torch.Tensor, lengths: torch.Tensor) -> None:
        """Start decoding a batch; `take` returns its crops, batches in the order fed."""
        self.pipe.feed_input("files", np.split(data.numpy(), np.cumsum(lengths.numpy())[:-1]))
        self.pipe.schedule_run()
        self.in_flight += 1

    def take(self) -> torch.Tensor | list[torch.Tensor]:
        """The crops of the oldest batch fed."""
        self.in_flight -= 1
        try:
            # on a GPU bound to the caller's stream (the prefetcher's) rather than waited for on the host
            (out,) = self.pipe.outputs(torch.cuda.current_stream(self.device) if self.gpu else None)
        except RuntimeError as e:  # DALI's message: the pipeline's traceback, then what went wrong
            lines = [line.strip() for line in str(e).split("encountered:")[-1].splitlines() if line.strip()]
            raise ConfigError(
                f"a JPEG in this batch cannot be decoded by DALI ({lines[0][:200] if lines else e}); find it with "
                f"data.decode=cpu, which names the file, or set data.skip_corrupt=true"
            ) from None
        if self.size is None:
            out = out.as_cpu() if self.gpu else out
            return [torch.from_numpy(np.array(out.at(i))) for i in range(len(out))]
        crops = torch.from_dlpack(out.as_tensor())  # DALI's memory, no copy, as DALI's own PyTorch iterator does
        x = crops.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)  # torch's memory
        if self.gpu:  # DALI may reuse its memory once torch lets go of it: not before the kernel above has read it
            done = torch.cuda.Event()
            done.record()
            self.held.append((crops, done))
            while self.held and self.held[0][1].query():
                self.held.popleft()
        return x

    def __call__(self, data: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.feed(data, lengths)
        return self.take()

    def stream(self, batches: Iterable[tuple]) -> Iterator[tuple]:
        """(crops, *rest) for each (data, lengths, *rest) of `batches`, the next batch decoding meanwhile."""
        while self.in_flight:  # what a stream stopped early left behind: not this one's crops
            self.take()
        pending = None
        for data, lengths, *rest in batches:
            self.feed(data, lengths)
            if pending is not None:
                yield self.take(), *pending
            pending = rest
        if pending is not None:
            yield self.take(), *pending

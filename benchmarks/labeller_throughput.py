"""Speed of the fine-tuned VLM labeller against plain frame decoding of the same clips, in one process.

    .venv/bin/python benchmarks/labeller_throughput.py HUMAN_STAGE [--vlm tiny] [--num-frames 4] [--epochs 2]

HUMAN_STAGE is an `annotate import` folder, e.g. ``emovid_demo/work/annotate/human`` after
`emovid-build demo emovid_demo`. The baseline decodes every clip's sampled frames (the same frames at the
same size the labeller reads) with PyAV; then `annotate finetune` trains on the human-labelled clips and
the saved labeller labels all of them. Printed: baseline clips/s, predict clips/s and their ratio,
seconds per optimiser step and its ratio to decoding that step's clips, and the peak memory (CUDA when
the run is on a GPU, else the process's peak RSS).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from emovid_datasets.labelling.finetune import FineTunedVLMLabeller, FinetuneSettings, finetune_labeller
from emovid_datasets.labelling.tiny import TINY, TINY_FRAME_PIXELS
from emovid_datasets.media import sample_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from builder_scripts.engine.manifest import read_manifest  # noqa: E402


def peak_memory(device: str) -> str:
    """Peak GPU memory allocated by torch (GiB) on CUDA, else this process's peak RSS (GiB)."""
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB CUDA"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS"


def main() -> None:
    """Run the three measurements and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("human_stage")
    parser.add_argument("--vlm", default=TINY)
    parser.add_argument("--num-frames", type=int, default=4)
    parser.add_argument("--frame-size", type=int, default=448)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()

    rows = read_manifest(args.human_stage)
    human = [r for r in rows if r.get("label_source") == "human"]
    size = int(TINY_FRAME_PIXELS ** 0.5) if args.vlm == TINY else args.frame_size
    started = time.perf_counter()
    for row in rows:
        sample_frames(row["video_path"], args.num_frames, width=size, height=size)
    decode_rate = len(rows) / (time.perf_counter() - started)
    print(f"baseline: sampled-frame decoding {decode_rate:.1f} clips/s over {len(rows)} clips "
          f"({args.num_frames} frames at {size}x{size})")

    settings = FinetuneSettings(num_frames=args.num_frames, frame_size=args.frame_size, epochs=args.epochs,
                                batch_size=args.batch_size, gradient_accumulation=1, device=args.device,
                                dtype=args.dtype)
    with tempfile.TemporaryDirectory() as out:
        record = finetune_labeller(rows, out, args.vlm, settings, progress=False)
        step = record["metrics"]["seconds_per_step"]
        decode_step = args.batch_size / decode_rate
        print(f"finetune: {step * 1000:.1f} ms per optimiser step (batch {args.batch_size}; frames are decoded once "
              f"before training) = {step / decode_step:.2f}x decoding that step's clips; {len(human)} human-labelled clips, "
              f"held-out accuracy {record['metrics']['heldout_accuracy']:.3f}")
        labeller = FineTunedVLMLabeller.load(out, device=args.device, batch_size=args.batch_size)
        started = time.perf_counter()
        labeller.predict_proba([r["video_path"] for r in rows])
        predict_rate = len(rows) / (time.perf_counter() - started)
        print(f"predict: {predict_rate:.1f} clips/s (decoding included) = {predict_rate / decode_rate:.2f}x the "
              f"decoding baseline")
    print(f"peak memory: {peak_memory(args.device)}")


if __name__ == "__main__":
    main()

"""Read TensorBoard event files back, raw: what a training wrote, duplicates included."""

from __future__ import annotations

from pathlib import Path


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the event files of ``folder`` (none while it does not exist), in file and
    write order, without TensorBoard's purging of restarted steps: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")) if folder.is_dir() else []:
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                number = value.simple_value if value.HasField("simple_value") else value.tensor.float_val[0]
                scalars.setdefault(value.tag, []).append((event.step, float(number)))
    return scalars
